"""kuma-cp's memory per idle connection on the dp server's own TLS layer
(kuma/xds/server/tls.py, the dp server's ``server_context``) beside plain TCP: N clients in
another process connect, send a 61 KB first request (what Envoy's first DeltaDiscoveryRequest
weighs), read a response, then stay connected and idle. The server's RSS (and, with
``--tracemalloc``, its Python allocations) before the first and after the last, divided by N.

    python benchmarks/bench_tls_memory.py --connections 2000 --modes tcp,tls --rounds 2

Modes (comma-separated, alternated each round, each in a fresh server process): ``tcp``;
``tls``; ``tls`` with ``-notickets`` (no TLS 1.3 session tickets), ``-tls12`` (clients capped at
TLS 1.2, as Envoy's default), ``-norelease`` (``SSL_MODE_RELEASE_BUFFERS`` cleared, to show what
it saves), ``-sendN`` / ``-recvN`` (slices of N bytes into OpenSSL, e.g. ``-send2048``,
``-recv4096``); ``@connect`` (clients
connect but never handshake) and ``@handshake`` (handshake, no request) for what each stage
leaves.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import multiprocessing
import os
import ssl
import statistics
import tracemalloc

import kuma.xds.server.tls
from kuma.tls.certs import generate_ca_certificate
from kuma.tls.persisted import ServingCertificate
from kuma.xds.server.tls import TlsServerProtocol

REQUEST = 61 * 1024
RESPONSE = 24 * 1024


def rss_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def heap_in_use() -> int:
    """Bytes malloc has handed out and not had back (glibc ``mallinfo2``: arenas + mmapped)."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    return int(info.uordblks + info.hblkhd)


def clear_release_buffers(context: ssl.SSLContext) -> None:
    """Undo the ``SSL_MODE_RELEASE_BUFFERS`` CPython sets on every context, to show what it
    saves (measurement only: reads ``SSL_CTX *`` from CPython 3.11's ``PySSLContext``, the
    first field after the object header)."""
    ctx = ctypes.c_void_p.from_address(id(context) + 16).value
    libssl = ctypes.CDLL("libssl.so.3")
    libssl.SSL_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
    libssl.SSL_CTX_ctrl.restype = ctypes.c_long
    ssl_ctrl_mode, ssl_ctrl_clear_mode, release_buffers = 33, 78, 0x10
    assert libssl.SSL_CTX_ctrl(ctx, ssl_ctrl_mode, 0, None) & release_buffers
    libssl.SSL_CTX_ctrl(ctx, ssl_ctrl_clear_mode, release_buffers, None)
    assert not libssl.SSL_CTX_ctrl(ctx, ssl_ctrl_mode, 0, None) & release_buffers


def malloc_trim() -> None:
    ctypes.CDLL("libc.so.6").malloc_trim(0)


def clients(
    port: int, ca_pem: bytes, count: int, tls12: bool, stage: str, ready: object, stop: object
) -> None:
    async def one(context: ssl.SSLContext | None) -> asyncio.StreamWriter:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname="localhost" if context else None
        )
        if stage:  # "connect": no TLS handshake; "handshake": no request
            return writer
        writer.write(b"r" * REQUEST)
        await reader.readexactly(RESPONSE)
        return writer

    async def run() -> None:
        context: ssl.SSLContext | None = None
        if ca_pem and stage != "connect":
            context = ssl.create_default_context(cadata=ca_pem.decode())
            context.set_alpn_protocols(["h2"])
            if tls12:
                context.maximum_version = ssl.TLSVersion.TLSv1_2
        writers = []
        for start in range(0, count, 50):
            writers += await asyncio.gather(
                *(one(context) for _ in range(start, min(count, start + 50)))
            )
        ready.set()  # type: ignore[attr-defined]
        await asyncio.get_running_loop().run_in_executor(None, stop.wait)  # type: ignore[attr-defined]
        for writer in writers:
            writer.close()

    asyncio.run(run())


class App(asyncio.Protocol):
    """Reads the request, answers once, then stays idle (a converged proxy's stream)."""

    def __init__(self) -> None:
        self.received = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        before = self.received
        self.received += len(data)
        if before < REQUEST <= self.received and self.transport is not None:
            self.transport.write(b"a" * RESPONSE)


async def measure(
    mode: str, certificate: ServingCertificate, count: int, trace: bool
) -> dict[str, float]:
    context = certificate.server_context()
    if "notickets" in mode:
        context.num_tickets = 0
    if "norelease" in mode:
        clear_release_buffers(context)
    for option in mode.partition("@")[0].split("-"):
        if option.startswith("send") and option[4:].isdigit():
            kuma.xds.server.tls.SLICE = int(option[4:])
        if option.startswith("recv") and option[4:].isdigit():
            kuma.xds.server.tls.RECEIVE_SLICE = int(option[4:])

    def factory() -> asyncio.BaseProtocol:
        return App() if mode == "tcp" else TlsServerProtocol(context, App())

    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    spawn = multiprocessing.get_context("spawn")
    ready, stop = spawn.Event(), spawn.Event()
    gc.collect()
    malloc_trim()
    if trace:
        tracemalloc.start()
    before = rss_kb()
    heap_before = heap_in_use()
    traced_before = tracemalloc.get_traced_memory()[0] if trace else 0
    process = spawn.Process(
        target=clients,
        args=(
            port,
            b"" if mode == "tcp" else certificate.trusted,
            count,
            "tls12" in mode,
            mode.partition("@")[2],
            ready,
            stop,
        ),
    )
    process.start()
    await loop.run_in_executor(None, ready.wait)
    await asyncio.sleep(0.5)
    gc.collect()
    after = rss_kb()
    heap = heap_in_use() - heap_before
    traced = (tracemalloc.get_traced_memory()[0] - traced_before) if trace else 0
    malloc_trim()
    trimmed = rss_kb()
    if trace:
        tracemalloc.stop()
    stop.set()
    process.join()
    server.close()
    return {
        "rss": (after - before) * 1024 / count,
        "trimmed": (trimmed - before) * 1024 / count,
        "python": traced / count,
        "heap": heap / count,
    }


def run_one(mode: str, count: int, trace: bool, cert: bytes, key: bytes, out: object) -> None:
    certificate = ServingCertificate(chain=cert, key=key, trusted=cert, source="bench")
    out.put(asyncio.run(measure(mode, certificate, count, trace)))  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--modes", default="tcp,tls")
    parser.add_argument("--tracemalloc", action="store_true")
    args = parser.parse_args()
    print(f"load average at start {os.getloadavg()[0]:.2f}")
    cert, key = generate_ca_certificate(["localhost"])
    spawn = multiprocessing.get_context("spawn")
    results: dict[str, list[dict[str, float]]] = {}
    for _ in range(args.rounds):
        for mode in args.modes.split(","):
            out = spawn.Queue()
            # Each measurement in a fresh server process: RSS is a high-water mark.
            process = spawn.Process(
                target=run_one, args=(mode, args.connections, args.tracemalloc, cert, key, out)
            )
            process.start()
            result = out.get()
            process.join()
            results.setdefault(mode, []).append(result)
            kb = {name: value / 1024 for name, value in result.items()}
            print(
                f"{mode:14} RSS {kb['rss']:6.1f} KB/conn, after malloc_trim {kb['trimmed']:6.1f}, "
                f"malloc in use {kb['heap']:5.1f}, Python (tracemalloc) {kb['python']:5.1f}",
                flush=True,
            )
    for mode, values in results.items():
        rss = statistics.median(v["rss"] for v in values) / 1024
        trimmed = statistics.median(v["trimmed"] for v in values) / 1024
        print(f"{mode:14} median RSS {rss:6.1f} KB per connection, trimmed {trimmed:6.1f}")
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
