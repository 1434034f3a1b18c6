"""The delta state machine against a model client, over random sequences of events.

Events: the desired state changes (set or remove a resource), the client subscribes or
unsubscribes (names and the wildcard), reconnects (a new stream told what the client holds),
and the server builds a wake-up's responses, which the model client applies.

Checked on every response: only wanted names are sent, removals only for held names, nothing
unchanged is resent unless a rule asks for it, make-before-break order. Checked after every
build: the client holds exactly the desired resources it wants, and nothing is left to do.
"""

from __future__ import annotations

from typing import Any

from envoy.service.discovery.v3.discovery_pb2 import DeltaDiscoveryRequest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule

from kuma.xds.generate.types import CLUSTER, ENDPOINT, LISTENER, SEND_ORDER
from kuma.xds.server.delta import DeltaProtocol
from kuma.xds.snapshot import VersionedResource

from .fakes import resource

TYPES = (CLUSTER, ENDPOINT, LISTENER)
NAMES = ("a", "b", "c")

types = st.sampled_from(TYPES)
names = st.sampled_from(NAMES)
name_lists = st.lists(st.sampled_from((*NAMES, "*")), max_size=3)


class _ClientType:
    def __init__(self) -> None:
        self.wildcard = False
        self.names: set[str] = set()
        self.held: dict[str, str] = {}

    def wants(self, name: str) -> bool:
        return self.wildcard or name in self.names


class DeltaModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.server = DeltaProtocol()
        self.desired: dict[str, dict[str, VersionedResource]] = {t: {} for t in TYPES}
        self.changed: dict[str, set[str]] = {}
        self.client: dict[str, _ClientType] = {}
        self.server_seen: set[str] = set()
        # Names that may be sent unchanged in the next build: subscribed again, or uncovered.
        self.may_resend: dict[str, set[str]] = {t: set() for t in TYPES}

    @rule(type_url=types, name=names, rev=st.integers(0, 2))
    def put(self, type_url: str, name: str, rev: int) -> None:
        self.desired[type_url][name] = resource(type_url, name, rev)
        self.changed.setdefault(type_url, set()).add(name)

    @rule(type_url=types, name=names)
    def remove(self, type_url: str, name: str) -> None:
        if self.desired[type_url].pop(name, None) is not None:
            self.changed.setdefault(type_url, set()).add(name)

    @rule(type_url=types, subscribe=name_lists, unsubscribe=name_lists)
    def request(self, type_url: str, subscribe: list[str], unsubscribe: list[str]) -> None:
        first = type_url not in self.server_seen
        self.server_seen.add(type_url)
        client = self.client.setdefault(type_url, _ClientType())
        if first and not subscribe and type_url in (CLUSTER, LISTENER):
            client.wildcard = True
        for name in subscribe:
            if name == "*":
                client.wildcard = True
            else:
                client.names.add(name)
                self.may_resend[type_url].add(name)
        for name in unsubscribe:
            if name == "*":
                client.wildcard = False
                client.held = {n: v for n, v in client.held.items() if n in client.names}
            elif client.wildcard:
                client.names.discard(name)
                self.may_resend[type_url].add(name)
            else:
                client.names.discard(name)
                client.held.pop(name, None)
        self.server.handle_request(
            DeltaDiscoveryRequest(
                type_url=type_url,
                resource_names_subscribe=subscribe,
                resource_names_unsubscribe=unsubscribe,
            )
        )

    @rule()
    def reconnect(self) -> None:
        """A new stream: each type's first request carries what the client holds."""
        self.server = DeltaProtocol()
        self.server_seen = set()
        for type_url, client in self.client.items():
            if not (client.wildcard or client.names):
                continue
            self.server_seen.add(type_url)
            self.server.handle_request(
                DeltaDiscoveryRequest(
                    type_url=type_url,
                    resource_names_subscribe=[*sorted(client.names), *["*"] * client.wildcard],
                    initial_resource_versions=client.held,
                )
            )

    @rule()
    def build(self) -> None:
        self.server.resources_changed(self.changed)
        self.changed = {}
        responses = self.server.build_responses(lambda type_url: self.desired.get(type_url, {}))
        self._check_order(responses)
        clusters_sent: set[str] = set()
        for response in responses:
            client = self.client[response.type_url]
            for item in response.resources:
                assert client.wants(item.name), f"sent unwanted {item.name}"
                resend_ok = item.name in self.may_resend[response.type_url] or (
                    response.type_url == ENDPOINT and item.name in clusters_sent
                )
                assert client.held.get(item.name) != item.version or resend_ok, (
                    f"resent unchanged {item.name}"
                )
                client.held[item.name] = item.version
                if response.type_url == CLUSTER:
                    clusters_sent.add(item.name)
            for name in response.removed_resources:
                assert name in client.held, f"removal of {name}, never held"
                del client.held[name]
        self.may_resend = {t: set() for t in TYPES}
        assert not self.server.has_work
        # Nothing changed since the build: the client holds exactly what it wants.
        for type_url, client in self.client.items():
            expected = {
                name: item.version
                for name, item in self.desired[type_url].items()
                if client.wants(name)
            }
            assert client.held == expected, type_url

    @staticmethod
    def _check_order(responses: list[Any]) -> None:
        rank = {type_url: index for index, type_url in enumerate(SEND_ORDER)}
        updates = [r for r in responses if len(r.resources)]
        removals_only = [r for r in responses if not len(r.resources) and r.removed_resources]
        update_ranks = [rank[r.type_url] for r in updates]
        assert update_ranks == sorted(update_ranks), "updates out of make-before-break order"
        removal_ranks = [rank[r.type_url] for r in removals_only]
        assert removal_ranks == sorted(removal_ranks, reverse=True), "removals out of order"
        if removals_only:
            first_removal = responses.index(removals_only[0])
            assert all(responses.index(r) < first_removal for r in updates)


DeltaModel.TestCase.settings = settings(max_examples=400, stateful_step_count=40, deadline=None)
test_delta_state_machine = DeltaModel.TestCase
