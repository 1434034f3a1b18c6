"""The state-of-the-world state machine against a model client, over random event sequences.

Events: the desired state changes, the client sends a request (the full list of names it wants,
``"*"`` included when it wants everything), reconnects (a new stream told the version it
holds), and the server builds a wake-up's responses, which the model client applies.

Checked on every build: ``version_info`` is the hash of the set sent; a set is not sent again
under the version the client already has unless its clusters changed (endpoints after a cluster
update); clusters come first and a CDS response that drops clusters comes last. Checked after
every build: the client's last set of each type is exactly what it asked for.
"""

from __future__ import annotations

from envoy.service.discovery.v3.discovery_pb2 import DiscoveryRequest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule

from kuma.xds.generate.types import CLUSTER, ENDPOINT, LISTENER, SEND_ORDER
from kuma.xds.server.delta import LEGACY_WILDCARD_TYPES
from kuma.xds.server.sotw import SotwProtocol, set_version
from kuma.xds.snapshot import VersionedResource

from .fakes import resource

TYPES = (CLUSTER, ENDPOINT, LISTENER)
NAMES = ("a", "b", "c")
REVS = range(3)

#: Every resource the test can produce, by body, to read responses back.
_BODIES = {
    item.body: item for item in (resource(t, n, r) for t in TYPES for n in NAMES for r in REVS)
}


class _ClientType:
    def __init__(self) -> None:
        self.requested: list[str] = []
        self.wildcard = False
        self.legacy = False
        self.names: set[str] = set()
        #: The last set received (name -> version) and its version_info.
        self.view: dict[str, str] | None = None
        self.version = ""


class SotwModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.server = SotwProtocol()
        self.desired: dict[str, dict[str, VersionedResource]] = {t: {} for t in TYPES}
        self.changed: dict[str, set[str]] = {}
        self.client: dict[str, _ClientType] = {}
        self.server_seen: set[str] = set()
        self.clusters_sent_on_stream = False

    @rule(type_url=st.sampled_from(TYPES), name=st.sampled_from(NAMES), rev=st.sampled_from(REVS))
    def put(self, type_url: str, name: str, rev: int) -> None:
        self.desired[type_url][name] = resource(type_url, name, rev)
        self.changed.setdefault(type_url, set()).add(name)

    @rule(type_url=st.sampled_from(TYPES), name=st.sampled_from(NAMES))
    def remove(self, type_url: str, name: str) -> None:
        if self.desired[type_url].pop(name, None) is not None:
            self.changed.setdefault(type_url, set()).add(name)

    @rule(
        type_url=st.sampled_from(TYPES),
        requested=st.lists(st.sampled_from((*NAMES, "*")), max_size=4),
    )
    def request(self, type_url: str, requested: list[str]) -> None:
        client = self.client.setdefault(type_url, _ClientType())
        first = type_url not in self.server_seen
        self.server_seen.add(type_url)
        self._send(type_url, client, requested, first)

    @rule()
    def reconnect(self) -> None:
        self.server = SotwProtocol()
        self.server_seen = set(self.client)
        self.clusters_sent_on_stream = False
        for type_url, client in self.client.items():
            # An empty first request for clusters or listeners is the legacy wildcard anew.
            self._send(type_url, client, [] if client.legacy else client.requested, True)

    def _send(self, type_url: str, client: _ClientType, requested: list[str], first: bool) -> None:
        if first:
            client.legacy = not requested and type_url in LEGACY_WILDCARD_TYPES
        elif requested:
            client.legacy = False
        client.wildcard = client.legacy or "*" in requested
        client.names = {n for n in requested if n != "*"}
        client.requested = requested
        self.server.handle_request(
            DiscoveryRequest(
                type_url=type_url,
                resource_names=requested,
                version_info=client.version if first else "",
            )
        )

    @rule()
    def build(self) -> None:
        self.server.resources_changed(self.changed)
        self.changed = {}
        responses = self.server.build_responses(lambda type_url: self.desired[type_url])
        rank = {type_url: index for index, type_url in enumerate(SEND_ORDER)}
        ranks = [rank[r.type_url] for r in responses]
        if len(ranks) > 1 and ranks[-1] == rank[CLUSTER]:
            ranks.pop()  # the CDS response that drops clusters, after the listeners moved
        assert ranks == sorted(ranks), "out of make-before-break order"
        clusters_changed = False
        for response in responses:
            client = self.client[response.type_url]
            items = {_BODIES[item.value].name: _BODIES[item.value] for item in response.resources}
            assert len(items) == len(response.resources), "a name twice in one response"
            assert response.version_info == set_version(items)
            view = {name: item.version for name, item in items.items()}
            if response.type_url == CLUSTER:
                # On a new stream the server cannot tell which clusters changed: all may count.
                clusters_changed |= (
                    client.view is None
                    or not self.clusters_sent_on_stream
                    or any(client.view.get(name) != version for name, version in view.items())
                )
                self.clusters_sent_on_stream = True
            elif response.version_info == client.version:
                assert response.type_url == ENDPOINT, "resent unchanged"
                assert clusters_changed, "endpoints resent without a cluster change"
            client.view, client.version = view, response.version_info
        assert not self.server.has_work
        for type_url, client in self.client.items():
            current = self.desired[type_url]
            if client.wildcard:
                expected = {name: item.version for name, item in current.items()}
            else:
                expected = {n: current[n].version for n in client.names if n in current}
            if client.view is None and not expected and not client.wildcard:
                continue  # nothing was ever there to send
            assert client.view == expected, type_url


SotwModel.TestCase.settings = settings(max_examples=400, stateful_step_count=40, deadline=None)
test_sotw_state_machine = SotwModel.TestCase
