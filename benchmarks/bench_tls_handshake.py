"""Server CPU per TLS handshake on kuma-cp's stack: asyncio's SSL protocol with the dp server's
own context (:meth:`ServingCertificate.server_context`), for a generated certificate of each key
type. Every proxy that connects (10,000 at start-up, all of them again after a restart of
kuma-cp) costs one handshake, so this is part of the convergence and reconnect cost per proxy.

The clients run in another process (so the server's CPU time is its own) and connect one after
another: TCP connect, handshake verifying the certificate, close.

    python benchmarks/bench_tls_handshake.py --handshakes 500 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import ssl
import statistics
import tempfile
import time
from pathlib import Path

from kuma.tls.certs import KEY_TYPES, generate_ca_certificate
from kuma.tls.persisted import ServingCertificate


def clients(port: int, ca_pem: bytes, count: int) -> None:
    async def run() -> None:
        context: ssl.SSLContext | None = None
        if ca_pem:
            with tempfile.NamedTemporaryFile(suffix=".pem") as file:
                file.write(ca_pem)
                file.flush()
                context = ssl.create_default_context(cafile=file.name)
            context.set_alpn_protocols(["h2"])
        for _ in range(count):
            _, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=context, server_hostname="localhost" if context else None
            )
            writer.close()
            await writer.wait_closed()

    asyncio.run(run())


async def measure(certificate: ServingCertificate | None, count: int) -> float:
    """Server CPU seconds per connection (``None``: plain TCP, the baseline)."""
    done = 0
    finished = asyncio.Event()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal done
        await reader.read()  # until the client closes
        writer.close()
        done += 1
        if done == count:
            finished.set()

    server = await asyncio.start_server(
        accept,
        "127.0.0.1",
        0,
        ssl=certificate.server_context() if certificate else None,
        backlog=1024,
    )
    port = server.sockets[0].getsockname()[1]
    start = time.process_time()
    process = multiprocessing.get_context("spawn").Process(
        target=clients, args=(port, certificate.trusted if certificate else b"", count)
    )
    process.start()
    await finished.wait()
    used = time.process_time() - start
    process.join()
    server.close()
    await server.wait_closed()
    return used / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--handshakes", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"load average at start {os.getloadavg()[0]:.2f}")
    pairs = {kind: generate_ca_certificate(["localhost"], key_type=kind) for kind in KEY_TYPES}
    results: dict[str, list[float]] = {kind: [] for kind in ("TCP", *KEY_TYPES)}
    for _ in range(args.rounds):  # alternated, so drifting load hits every kind alike
        results["TCP"].append(asyncio.run(measure(None, args.handshakes)))
        for kind, (cert, key) in pairs.items():
            certificate = ServingCertificate(chain=cert, key=key, trusted=cert, source=kind)
            results[kind].append(asyncio.run(measure(certificate, args.handshakes)))
    for kind, values in results.items():
        runs = ", ".join(f"{v * 1e6:.0f}" for v in values)
        print(
            f"{kind:5}: server CPU per connection median {statistics.median(values) * 1e6:.0f} µs "
            f"({runs})"
        )
    print(f"load average at end {os.getloadavg()[0]:.2f}  ({Path(__file__).name})")


if __name__ == "__main__":
    main()
