"""A multi-zone deployment for kuma-load, as an operator runs it: a global kuma-cp and zone
kuma-cps, real processes, each with its own directory store and work dir. Global serves KDS
with TLS (its own ``kuma-cp.crt``, which each zone verifies: ``kds.rootCaFile``), and each zone
authenticates with a zone token issued by global's API (``POST /tokens/zone``), kept in a 0600
file. The Mesh and its policies are authored on global (a zone refuses them); global creates
the mesh's CA and signing key and KDS brings them to the zones.

The zones' own kuma-cps are started by their :class:`~.zone_harness.ZoneHarness` (the single-
zone harness, with :meth:`Federation.zone_env` as the extra environment); this module starts
global and reads every control plane's KDS traffic counters (``kuma_kds_sent_bytes``).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from .mesh import Plan
from .procs import ManagedProcess, free_port, start_control_plane
from .stores import open_writer

#: Seconds to wait for global's API to issue a zone token (it does once its keys exist).
TOKEN_WAIT = 60.0


class Federation:
    def __init__(self, plan: Plan, *, cpus: set[int] | None, log_level: str = "info") -> None:
        self.plan = plan
        self.cpus = cpus
        self.log_level = log_level
        self.root = Path(tempfile.mkdtemp(prefix="kuma-load-global-"))
        self.kds_port = free_port()
        self.api_port = free_port()
        self.global_cp: ManagedProcess | None = None

    async def start(self) -> None:
        """Write the Mesh and its policies into global's store, start global."""
        store = self.root / "store"
        writer = open_writer("directory", str(store))
        await writer.write_all([self.plan.mesh_document(), *self.plan.policy_documents()])
        await writer.close()
        (self.root / "work").mkdir()
        self.global_cp, _ = await asyncio.to_thread(
            start_control_plane,
            "kuma",
            store="directory",
            location=str(store),
            cpus=self.cpus,
            log_level=self.log_level,
            api_port=self.api_port,
            work_dir=str(self.root / "work"),
            extra_env={
                "KUMA_MODE": "global",
                "KUMA_MULTIZONE_GLOBAL_KDS_GRPC_PORT": str(self.kds_port),
            },
        )

    async def zone_env(self, zone: str) -> dict[str, str]:
        """The environment of zone ``zone``'s kuma-cp: global's address, its CA, a zone token."""
        token = await asyncio.to_thread(self._zone_token, zone)
        token_file = self.root / f"{zone}.token"
        token_file.touch(mode=0o600)
        token_file.write_text(token)
        return {
            "KUMA_MODE": "zone",
            "KUMA_MULTIZONE_ZONE_NAME": zone,
            "KUMA_MULTIZONE_ZONE_GLOBAL_ADDRESS": f"grpcs://127.0.0.1:{self.kds_port}",
            "KUMA_MULTIZONE_ZONE_KDS_ROOT_CA_FILE": str(self.root / "work" / "kuma-cp.crt"),
            "KUMA_MULTIZONE_ZONE_KDS_ZONE_TOKEN_FILE": str(token_file),
        }

    def _zone_token(self, zone: str) -> str:
        body = json.dumps({"zone": zone, "scope": ["ingress", "egress"], "validFor": "24h"})
        deadline = time.monotonic() + TOKEN_WAIT
        last = ""
        while time.monotonic() < deadline:
            connection = http.client.HTTPConnection("127.0.0.1", self.api_port, timeout=10)
            try:
                connection.request("POST", "/tokens/zone", body=body.encode())
                response = connection.getresponse()
                text = response.read().decode()
                if response.status == 200:
                    return text.strip()
                last = f"HTTP {response.status}"  # the token's text is never logged
            except OSError as error:
                last = str(error)
            finally:
                connection.close()
            time.sleep(0.2)
        raise RuntimeError(f"global issued no zone token for {zone}: {last}")

    def cpu_seconds(self) -> float:
        return self.global_cp.cpu_seconds() if self.global_cp is not None else 0.0

    def close(self) -> None:
        if self.global_cp is not None:
            self.global_cp.stop()
            self.global_cp = None
        shutil.rmtree(self.root, ignore_errors=True)


def kds_sent_bytes(api_port: int) -> dict[tuple[str, str], float]:
    """``kuma_kds_sent_bytes`` of the control plane whose API is on ``api_port``."""
    connection = http.client.HTTPConnection("127.0.0.1", api_port, timeout=10)
    try:
        connection.request("GET", "/metrics")
        return parse_kds_bytes(connection.getresponse().read().decode())
    finally:
        connection.close()


def parse_kds_bytes(text: str) -> dict[tuple[str, str], float]:
    """(peer, kind) → bytes sent since start, from Prometheus' text format."""
    prefix = "kuma_kds_sent_bytes_total{"
    found: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        if not line.startswith(prefix):
            continue
        labels, _, value = line.removeprefix(prefix).partition("} ")
        fields = dict(part.split("=", 1) for part in labels.split(","))
        found[(fields["peer"].strip('"'), fields["kind"].strip('"'))] = float(value)
    return found


def traffic_delta(
    before: dict[tuple[str, str], float], after: dict[tuple[str, str], float]
) -> dict[str, Any]:
    """Bytes sent between two readings, by peer, and by peer and kind (only kinds that moved)."""
    by_kind: dict[str, dict[str, int]] = {}
    for key, value in after.items():
        moved = int(value - before.get(key, 0.0))
        if moved:
            by_kind.setdefault(key[0], {})[key[1]] = moved
    return {peer: {"total": sum(kinds.values()), **kinds} for peer, kinds in by_kind.items()}
