"""Kuma's policies on real Envoys: the default policies every new mesh gets are in the
sidecars' config, MeshRetry retries a failing backend (attempts counted at the backend), and
a MeshRetry applied later overrides the default for its service; MeshCircuitBreaker,
MeshHealthCheck, MeshRateLimit, MeshFaultInjection, MeshAccessLog (lines in files) and
MeshLoadBalancingStrategy (RingHash pins each user to one endpoint) act on real traffic."""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import socket
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kuma.dp.accesslogs import AccessLogStreamer
from kuma.resources.accesslog_pipe import access_log_socket_name, go_temp_dir
from tests.fixtures.envoy import (
    ControlPlane,
    EnvoyFactory,
    HttpService,
    eventually,
    http_get,
)
from tests.fixtures.otlp import OtlpCollector
from tests.integration.test_envoy_traffic import BACKEND, Mesh, Sidecar

pytestmark = pytest.mark.envoy


@pytest.fixture
def sidecars(
    control_plane: ControlPlane,
    envoy_factory: EnvoyFactory,
    http_services: Callable[[str], HttpService],
) -> Mesh:
    return Mesh(control_plane, envoy_factory, http_services)


def _route(listener: dict[str, object]) -> dict[str, object]:
    chain = listener["filter_chains"][0]  # type: ignore[index]
    hcm = chain["filters"][0]["typed_config"]
    route: dict[str, object] = hcm["route_config"]["virtual_hosts"][0]["routes"][0]["route"]
    return route


def test_a_new_mesh_has_kuma_default_timeouts_retries_and_circuit_breakers(
    sidecars: Mesh,
) -> None:
    backend = sidecars.backend("backend-1")
    web = sidecars.web()
    web.envoy.wait_endpoints(BACKEND, {backend.inbound_port})
    config = web.envoy.dynamic_config()

    route = _route(config["listeners"][web.outbound_listener])
    assert route["timeout"] == "15s"
    assert route["idle_timeout"] == "1800s"
    assert route["retry_policy"] == {
        "retry_on": "gateway-error,connect-failure,refused-stream",
        "num_retries": 5,
        "per_try_timeout": "16s",
        "retry_back_off": {"base_interval": "0.025s", "max_interval": "0.250s"},
    }
    cluster = config["clusters"][BACKEND]
    assert cluster["connect_timeout"] == "5s"
    assert cluster["circuit_breakers"]["thresholds"] == [
        {
            "max_connections": 1024,
            "max_pending_requests": 1024,
            "max_requests": 1024,
            "max_retries": 3,
        }
    ]
    inbound = _route(web.envoy.dynamic_config()["listeners"][web.inbound_listener])
    assert inbound["timeout"] == "0s"
    assert inbound["idle_timeout"] == "3600s"


def test_mesh_retry_retries_a_failing_backend_and_a_later_policy_overrides_it(
    sidecars: Mesh,
) -> None:
    backend = sidecars.backend("backend-1")
    web = sidecars.web()
    web.envoy.wait_endpoints(BACKEND, {backend.inbound_port})
    http = backend.http
    assert http is not None
    assert http_get(web.outbound) == (200, "backend-1")

    # The default MeshRetry (5 retries on gateway errors): two 503s, then success.
    before = http.hits
    http.fail_next = 2
    assert http_get(web.outbound) == (200, "backend-1")
    assert http.hits - before == 3

    # A MeshService-targeted MeshRetry beats the Mesh-wide default (merged field by field:
    # one retry, the rest of the default kept).
    policy = {
        "type": "MeshRetry",
        "mesh": "default",
        "name": "backend-once",
        "spec": {
            "targetRef": {"kind": "Mesh"},
            "to": [
                {
                    "targetRef": {"kind": "MeshService", "name": BACKEND},
                    "default": {"http": {"numRetries": 1}},
                }
            ],
        },
    }
    sidecars.cp.put("retry-backend-once", yaml.safe_dump(policy))

    def one_retry() -> bool | None:
        route = _route(web.envoy.dynamic_config()["listeners"][web.outbound_listener])
        retry = route["retry_policy"]
        assert isinstance(retry, dict)
        return True if retry.get("num_retries") == 1 else None

    eventually(one_retry, "web's outbound route retries once")
    before = http.hits
    http.fail_next = 2
    status, _ = http_get(web.outbound)
    assert status == 503
    assert http.hits - before == 2
    http.fail_next = 0


def test_mesh_circuit_breaker_outlier_detection_ejects_a_failing_endpoint(
    sidecars: Mesh,
) -> None:
    failing = sidecars.backend("backend-1")
    healthy = sidecars.backend("backend-2")
    web = sidecars.web()
    web.envoy.wait_endpoints(BACKEND, {failing.inbound_port, healthy.inbound_port})
    assert failing.http is not None
    failing.http.fail_next = 1_000_000  # answers 503 from now on
    policy = {
        "type": "MeshCircuitBreaker",
        "mesh": "default",
        "name": "eject-failing",
        "spec": {
            "targetRef": {"kind": "Mesh"},
            "to": [
                {
                    "targetRef": {"kind": "MeshService", "name": BACKEND},
                    "default": {
                        "outlierDetection": {
                            "interval": "1s",
                            "baseEjectionTime": "60s",
                            "maxEjectionPercent": 50,
                            "detectors": {"totalFailures": {"consecutive": 2}},
                        }
                    },
                }
            ],
        },
    }
    sidecars.cp.put("cb-eject", yaml.safe_dump(policy))

    def configured() -> bool | None:
        cluster = web.envoy.dynamic_config()["clusters"][BACKEND]
        return True if "outlier_detection" in cluster else None

    eventually(configured, "web's backend cluster has outlier detection")

    def ejected() -> bool | None:
        http_get(web.outbound)  # retries hide the 503s; the failing host still sees them
        stats = web.envoy.stats()
        return True if stats.get("cluster.backend.outlier_detection.ejections_active") else None

    eventually(ejected, "the failing endpoint is ejected")
    before = failing.http.hits
    for _ in range(10):
        assert http_get(web.outbound) == (200, "backend-2")
    assert failing.http.hits == before


def test_mesh_health_check_marks_a_dead_endpoint_unhealthy(sidecars: Mesh) -> None:
    alive = sidecars.backend("backend-1")
    dead = sidecars.backend("backend-2")
    web = sidecars.web()
    web.envoy.wait_endpoints(BACKEND, {alive.inbound_port, dead.inbound_port})
    policy = {
        "type": "MeshHealthCheck",
        "mesh": "default",
        "name": "backend-health",
        "spec": {
            "targetRef": {"kind": "Mesh"},
            "to": [
                {
                    "targetRef": {"kind": "MeshService", "name": BACKEND},
                    "default": {
                        "interval": "1s",
                        # Envoy checks an idle cluster at this interval (default 60s).
                        "noTrafficInterval": "1s",
                        "timeout": "1s",
                        "unhealthyThreshold": 1,
                        "healthyThreshold": 1,
                        "http": {"path": "/"},
                    },
                }
            ],
        },
    }
    sidecars.cp.put("hc-backend", yaml.safe_dump(policy))

    def healthy(count: int) -> Callable[[], bool | None]:
        def check() -> bool | None:
            stats = web.envoy.stats()
            checked = stats.get("cluster.backend.health_check.attempt", 0) > 0
            members = stats.get("cluster.backend.membership_healthy")
            return True if checked and members == count else None

        return check

    eventually(healthy(2), "both backends pass the health check")
    assert dead.http is not None
    dead.http.close()  # the application is gone; its sidecar answers the check with 503
    eventually(healthy(1), "the dead backend is marked unhealthy")
    for _ in range(5):
        assert http_get(web.outbound) == (200, "backend-1")


def test_mesh_rate_limit_answers_over_the_budget_with_its_status(sidecars: Mesh) -> None:
    """A MeshRateLimit of 3 requests per minute on backend's inbound: the 4th request gets
    the policy's status from backend's sidecar, without reaching backend."""
    backend = sidecars.backend("backend-1")
    web = sidecars.web()
    web.envoy.wait_endpoints(BACKEND, {backend.inbound_port})
    http = backend.http
    assert http is not None
    policy = {
        "type": "MeshRateLimit",
        "mesh": "default",
        "name": "backend-budget",
        "spec": {
            "targetRef": {"kind": "MeshService", "name": BACKEND},
            "from": [
                {
                    "targetRef": {"kind": "Mesh"},
                    "default": {
                        "local": {
                            "http": {
                                "requestRate": {"num": 3, "interval": "1m"},
                                "onRateLimit": {
                                    "status": 423,
                                    "headers": {"add": [{"name": "x-limited", "value": "yes"}]},
                                },
                            }
                        }
                    },
                }
            ],
        },
    }
    sidecars.cp.put("ratelimit-backend", yaml.safe_dump(policy))

    def limited() -> bool | None:
        listener = backend.envoy.dynamic_config()["listeners"][backend.inbound_listener]
        return True if "local_ratelimit" in str(listener) else None

    eventually(limited, "backend's inbound listener carries the rate limit")
    before = http.hits
    answers = [http_get(web.outbound)[0] for _ in range(4)]
    assert answers == [200, 200, 200, 423]
    assert http.hits - before == 3  # the 4th never reached backend
    limited_stats = {
        name: value
        for name, value in backend.envoy.stats().items()
        if name.endswith("http_local_rate_limit.rate_limited")
    }
    assert sum(limited_stats.values()) == 1, limited_stats


class TcpLogSink:
    """kuma-dp's access-log streamer for proxy ``web`` (in a thread, at the pipe path the
    control plane names) and a TCP listener its lines go to."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(20)
        self.address = f"127.0.0.1:{self.server.getsockname()[1]}"
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        pipe = access_log_socket_name(go_temp_dir(), "web", "default")
        self.streamer = AccessLogStreamer(pipe)

    def run(self, coroutine: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(10)

    def first_line(self) -> str:
        connection, _ = self.server.accept()
        with connection:
            connection.settimeout(20)
            data = b""
            while b"\n" not in data:
                chunk = connection.recv(4096)
                assert chunk, f"the streamer closed the connection after {data!r}"
                data += chunk
        return data.split(b"\n", 1)[0].decode()


@pytest.fixture
def tcp_log_sink() -> Iterator[TcpLogSink]:
    sink = TcpLogSink()
    sink.thread.start()
    sink.run(sink.streamer.start())
    try:
        yield sink
    finally:
        sink.run(sink.streamer.stop())
        sink.loop.call_soon_threadsafe(sink.loop.stop)
        sink.thread.join(10)
        sink.loop.close()
        sink.server.close()


def test_mesh_access_log_writes_each_request_to_its_files(
    otlp_collector: OtlpCollector, tcp_log_sink: TcpLogSink, sidecars: Mesh, tmp_path: Path
) -> None:
    """A MeshAccessLog: web's outbound (``to``, JSON format with Kuma's placeholders) and
    backend's inbound (``from``, Kuma's default HTTP format) each write one line per request
    to their file (Envoy writes the files, kuma-cp never touches them); backend's inbound also
    sends the record to an OpenTelemetry collector, its body in the same default format, and
    web's outbound a Tcp backend's line through kuma-dp's streamer to a TCP listener.
    (The collector and sink fixtures come first so they stop after the Envoys.)"""
    backend = sidecars.backend("backend-1")
    web = sidecars.web()
    web.envoy.wait_endpoints(BACKEND, {backend.inbound_port})
    outbound_log, inbound_log = tmp_path / "outbound.log", tmp_path / "inbound.log"
    fields = {
        "mesh": "%KUMA_MESH%",
        "src": "%KUMA_SOURCE_SERVICE%",
        "dst": "%KUMA_DESTINATION_SERVICE%",
        "dir": "%KUMA_TRAFFIC_DIRECTION%",
        "method": "%REQ(:METHOD)%",
        "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
        "code": "%RESPONSE_CODE%",
    }
    json_format: dict[str, object] = {
        "type": "Json",
        "json": [{"key": k, "value": v} for k, v in fields.items()],
    }

    def backends(
        path: Path, fmt: dict[str, object] | None = None
    ) -> dict[str, list[dict[str, object]]]:
        file: dict[str, object] = {"path": str(path)}
        if fmt is not None:
            file["format"] = fmt
        return {"backends": [{"type": "File", "file": file}]}

    inbound = backends(inbound_log)
    outbound = backends(outbound_log, json_format)
    outbound["backends"].append({"type": "Tcp", "tcp": {"address": tcp_log_sink.address}})
    otel = {"endpoint": f"127.0.0.1:{otlp_collector.port}"}
    inbound["backends"].append({"type": "OpenTelemetry", "openTelemetry": otel})
    policy = {
        "type": "MeshAccessLog",
        "mesh": "default",
        "name": "logs",
        "spec": {
            "targetRef": {"kind": "Mesh"},
            "to": [
                {
                    "targetRef": {"kind": "MeshService", "name": BACKEND},
                    "default": outbound,
                }
            ],
            "from": [{"targetRef": {"kind": "Mesh"}, "default": inbound}],
        },
    }
    sidecars.cp.put("accesslog", yaml.safe_dump(policy))

    def logging(sidecar: Sidecar, listener: str) -> bool | None:
        dump = sidecar.envoy.dynamic_config()["listeners"][listener]
        return True if "envoy.access_loggers.file" in str(dump) else None

    eventually(lambda: logging(web, web.outbound_listener), "web's outbound logs")
    eventually(lambda: logging(backend, backend.inbound_listener), "backend's inbound logs")
    dump = backend.envoy.dynamic_config()
    assert "envoy.access_loggers.open_telemetry" in str(dump["listeners"])
    assert "meshaccesslog:opentelemetry:0" in dump["clusters"]
    assert http_get(web.outbound, "/hello") == (200, "backend-1")

    def lines(path: Path) -> list[str] | None:
        return path.read_text().splitlines() or None  # Envoy flushes about once a second

    (outbound_line,) = eventually(lambda: lines(outbound_log), "the outbound log line")
    assert json.loads(outbound_line) == {
        "mesh": "default",
        "src": "web",
        "dst": BACKEND,
        "dir": "OUTBOUND",
        "method": "GET",
        "path": "/hello",
        "code": 200,
    }
    (inbound_line,) = eventually(lambda: lines(inbound_log), "the inbound log line")
    # Kuma's default HTTP format: mesh, request line, code, flags, bytes, durations, headers,
    # then source "unknown" (an inbound), destination, the proxy's address, the upstream.
    default_format = (
        r'\[\S+\] default "GET /hello HTTP/\S+" 200 - \d+ \d+ \d+ \S+ "-" "-" "-" "[-0-9a-f]+" '
        r'"127\.0\.0\.1:\d+" "unknown" "backend" "127\.0\.0\.1" "127\.0\.0\.1:\d+"'
    )
    assert re.fullmatch(default_format, inbound_line), inbound_line
    (record,) = eventually(lambda: otlp_collector.received() or None, "the OTel record")
    assert re.fullmatch(default_format, record.body.string_value), record
    # The Tcp backend: Kuma's default HTTP format, from web to backend, via kuma-dp's pipe.
    outbound_format = default_format.replace('"unknown" "backend"', '"web" "backend"')
    tcp_line = tcp_log_sink.first_line()
    assert re.fullmatch(outbound_format, tcp_line), tcp_line


def _get_as(port: int, caller_tags: str | None) -> int:
    """One GET straight to ``port`` carrying Kuma's ``x-kuma-tags`` header (when given)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    headers = {"Connection": "close"}
    if caller_tags is not None:
        headers["x-kuma-tags"] = caller_tags
    try:
        connection.request("GET", "/", headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()


def test_mesh_fault_injection_aborts_for_the_clients_it_names(sidecars: Mesh) -> None:
    """A MeshFaultInjection on backend: delaying and aborting every request from any client
    answers web's requests with the policy's status from backend's sidecar, backend not
    reached; narrowed to clients of service ``web`` at 50 % it aborts about half of the
    requests whose ``x-kuma-tags`` say so, and none of the others; web's own sidecar then
    sends its tags, so a rule naming web, or a Mesh-wide rule beside one naming another
    client, aborts web's requests made through it."""
    backend = sidecars.backend("backend-1")
    web = sidecars.web()
    web.envoy.wait_endpoints(BACKEND, {backend.inbound_port})
    http_app = backend.http
    assert http_app is not None

    def policy(client: dict[str, str], percentage: int | str, delay: str | None = None) -> str:
        fault: dict[str, object] = {"abort": {"httpStatus": 418, "percentage": percentage}}
        if delay is not None:
            fault["delay"] = {"value": delay, "percentage": 100}
        spec = {
            "targetRef": {"kind": "MeshService", "name": BACKEND},
            "from": [{"targetRef": client, "default": {"http": [fault]}}],
        }
        document = {"type": "MeshFaultInjection", "mesh": "default", "name": "abort", "spec": spec}
        return yaml.safe_dump(document)

    def inbound_has(text: str) -> Callable[[], bool | None]:
        def check() -> bool | None:
            listener = backend.envoy.dynamic_config()["listeners"][backend.inbound_listener]
            return True if text in str(listener) else None

        return check

    sidecars.cp.put("fault-backend", policy({"kind": "Mesh"}, 100, delay="50ms"))
    eventually(inbound_has("envoy.filters.http.fault"), "backend's inbound has the fault filter")
    before = http_app.hits
    assert [http_get(web.outbound)[0] for _ in range(3)] == [418, 418, 418]
    assert http_app.hits == before
    stats = backend.envoy.stats()
    for counter in ("fault.aborts_injected", "fault.delays_injected"):  # delayed, then aborted
        injected = {name: value for name, value in stats.items() if name.endswith(counter)}
        assert sum(injected.values()) == 3, injected

    # Half of web's requests (Kuma's "50.0" -> 50 per hundred); 200 draws: 100 +- 40 is
    # over five standard deviations.
    sidecars.cp.put("fault-backend", policy({"kind": "MeshService", "name": "web"}, "50.0"))
    eventually(inbound_has("service=[^&]*web[,&]"), "the fault filter matches web's tags")
    inbound = backend.inbound_port
    as_web = [_get_as(inbound, "&kuma.io/service=web&") for _ in range(200)]
    assert set(as_web) == {200, 418}
    assert 60 <= as_web.count(418) <= 140, as_web.count(418)
    assert [_get_as(inbound, "&kuma.io/service=other&") for _ in range(5)] == [200] * 5
    assert http_app.hits == before + as_web.count(200) + 5

    # Through web's own sidecar: a rule naming clients makes the mesh's outbound routes send
    # the callers' tags, so web's requests are aborted by the rule that names web ...
    before = http_app.hits
    sidecars.cp.put("fault-backend", policy({"kind": "MeshService", "name": "web"}, 100))

    def web_sends_its_tags() -> bool | None:
        listener = web.envoy.dynamic_config()["listeners"][web.outbound_listener]
        return True if "&kuma.io/service=web&" in str(listener) else None

    eventually(web_sends_its_tags, "web's outbound route adds x-kuma-tags")
    eventually(inbound_has("'percentage': {'numerator': 100}"), "the abort is at 100 %")
    assert [http_get(web.outbound)[0] for _ in range(3)] == [418, 418, 418]
    # ... and, beside a rule naming another client, by the Mesh-wide rule for the rest.
    two_rules = yaml.safe_load(policy({"kind": "Mesh"}, 100))
    other = {"abort": {"httpStatus": 419, "percentage": 100}}
    two_rules["spec"]["from"].append(
        {"targetRef": {"kind": "MeshService", "name": "other"}, "default": {"http": [other]}}
    )
    sidecars.cp.put("fault-backend", yaml.safe_dump(two_rules))
    eventually(inbound_has("service=[^&]*other[,&]"), "the fault filter names other")
    assert [http_get(web.outbound)[0] for _ in range(3)] == [418, 418, 418]
    assert http_app.hits == before


def _get_as_user(port: int, user: str) -> str:
    """The body of one GET through ``port`` with ``x-user: <user>``."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/", headers={"Connection": "close", "x-user": user})
        response = connection.getresponse()
        assert response.status == 200
        return response.read().decode()
    finally:
        connection.close()


def test_mesh_load_balancing_strategy_ring_hash_pins_each_user_to_one_endpoint(
    sidecars: Mesh,
) -> None:
    """A RingHash MeshLoadBalancingStrategy hashing the ``x-user`` header: Envoy takes the
    cluster's lb_policy and the route's hash policy, each user's requests all reach one
    endpoint, and the users spread over both."""
    one = sidecars.backend("backend-1")
    two = sidecars.backend("backend-2")
    web = sidecars.web()
    web.envoy.wait_endpoints(BACKEND, {one.inbound_port, two.inbound_port})
    policy = {
        "type": "MeshLoadBalancingStrategy",
        "mesh": "default",
        "name": "ring-hash",
        "spec": {
            "targetRef": {"kind": "Mesh"},
            "to": [
                {
                    "targetRef": {"kind": "MeshService", "name": BACKEND},
                    "default": {
                        "loadBalancer": {
                            "type": "RingHash",
                            "ringHash": {
                                "minRingSize": 64,
                                "hashPolicies": [{"type": "Header", "header": {"name": "x-user"}}],
                            },
                        }
                    },
                }
            ],
        },
    }
    sidecars.cp.put("lb-ring-hash", yaml.safe_dump(policy))

    def configured() -> bool | None:
        config = web.envoy.dynamic_config()
        route = _route(config["listeners"][web.outbound_listener])
        return True if route.get("hash_policy") else None

    eventually(configured, "web's outbound route hashes x-user")
    config = web.envoy.dynamic_config()
    cluster = config["clusters"][BACKEND]
    assert cluster["lb_policy"] == "RING_HASH"
    assert cluster["ring_hash_lb_config"] == {"minimum_ring_size": "64"}
    route = _route(config["listeners"][web.outbound_listener])
    assert route["hash_policy"] == [{"header": {"header_name": "x-user"}}]
    reached: dict[str, str] = {}
    for user in (f"user-{number}" for number in range(16)):
        bodies = {_get_as_user(web.outbound, user) for _ in range(4)}
        assert len(bodies) == 1, (user, bodies)
        reached[user] = bodies.pop()
    assert set(reached.values()) == {"backend-1", "backend-2"}


def _retag(sidecars: Mesh, sidecar: Sidecar, tags: dict[str, str]) -> None:
    """Write the sidecar's Dataplane again with ``tags`` added to its inbound."""
    document = yaml.safe_load(sidecar.dataplane())
    document["networking"]["inbound"][0]["tags"].update(tags)
    sidecars.cp.put(sidecar.name, yaml.safe_dump(document))


def test_mesh_load_balancing_strategy_locality_affinity_prefers_the_consumers_node(
    sidecars: Mesh,
) -> None:
    """``localityAwareness.localZone.affinityTags`` on ``node``: the backend endpoint sharing
    the client's node is a locality of weight 1,000,000 against 1 for the other, so the
    client's requests all reach it (a stray one: probability 4e-5 over 40 requests); the
    client moving to the other node moves its traffic there (its CLA is its own shape's)."""
    one = sidecars.backend("backend-1")
    two = sidecars.backend("backend-2")
    web = sidecars.web()
    _retag(sidecars, one, {"node": "n1"})
    _retag(sidecars, two, {"node": "n2"})
    _retag(sidecars, web, {"node": "n1"})
    web.envoy.wait_endpoints(BACKEND, {one.inbound_port, two.inbound_port})
    policy = {
        "type": "MeshLoadBalancingStrategy",
        "mesh": "default",
        "name": "affinity",
        "spec": {
            "targetRef": {"kind": "Mesh"},
            "to": [
                {
                    "targetRef": {"kind": "MeshService", "name": BACKEND},
                    "default": {
                        "localityAwareness": {
                            "localZone": {"affinityTags": [{"key": "node", "weight": 1_000_000}]}
                        }
                    },
                }
            ],
        },
    }
    sidecars.cp.put("lb-affinity", yaml.safe_dump(policy))

    def weighted() -> bool | None:
        cluster = web.envoy.dynamic_config()["clusters"][BACKEND]
        return (
            True if "locality_weighted_lb_config" in cluster.get("common_lb_config", {}) else None
        )

    eventually(weighted, "web's backend cluster weighs localities")

    def all_reach(name: str) -> bool | None:
        bodies = {http_get(web.outbound)[1] for _ in range(40)}
        return True if bodies == {name} else None

    # The CLA arrives after the cluster (EDS after CDS): wait until the traffic follows.
    eventually(lambda: all_reach("backend-1"), "web's requests all reach backend-1 (node n1)")
    _retag(sidecars, web, {"node": "n2"})
    eventually(lambda: all_reach("backend-2"), "web's requests all reach backend-2 (node n2)")
