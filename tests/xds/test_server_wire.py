"""A delta response written as bytes (kuma/xds/server/wire.py) is the message upb would write.

The ADS server sends :class:`~kuma.xds.server.wire.WireResponse` s; KDS and the property tests
use the message path of the same state machine. Both must put the same bytes on the wire.
"""

from __future__ import annotations

import pytest
from envoy.service.discovery.v3.discovery_pb2 import (
    DeltaDiscoveryRequest,
    DeltaDiscoveryResponse,
    Resource,
)
from google.protobuf.any_pb2 import Any as AnyPb  # type: ignore[import-untyped, unused-ignore]
from hypothesis import given
from hypothesis import strategies as st

from kuma.xds.generate.types import CLUSTER, ENDPOINT, LISTENER
from kuma.xds.server.delta import DeltaProtocol
from kuma.xds.server.service import DeltaReply
from kuma.xds.server.wire import WireResponse, wire_response
from kuma.xds.snapshot import VersionedResource, content_version

texts = st.text(max_size=200)
# Lengths across the one-, two- and three-byte length prefixes.
bodies = st.one_of(
    st.binary(max_size=300), st.integers(16_380, 16_400).map(lambda size: b"\x01" * size)
)


@st.composite
def resources(draw: st.DrawFn, type_url: str) -> VersionedResource:
    body = draw(bodies)
    return VersionedResource(type_url, draw(texts), content_version(body), body)


def _message(
    type_url: str, nonce: str, send: list[VersionedResource], removed: list[str]
) -> DeltaDiscoveryResponse:
    items = [
        Resource(name=r.name, version=r.version, resource=AnyPb(type_url=type_url, value=r.body))
        for r in send
    ]
    return DeltaDiscoveryResponse(
        type_url=type_url, nonce=nonce, resources=items, removed_resources=removed
    )


@given(
    st.sampled_from((CLUSTER, ENDPOINT, LISTENER)).flatmap(
        lambda t: st.tuples(st.just(t), st.lists(resources(t), max_size=4))
    ),
    texts,
    st.lists(texts, max_size=4),
)
def test_the_bytes_are_upbs(
    typed: tuple[str, list[VersionedResource]], nonce: str, removed: list[str]
) -> None:
    type_url, send = typed
    # Twice: the second time the resources' encodings come from the cache.
    for _ in range(2):
        wire = wire_response(type_url, nonce, send, removed)
        expected = _message(type_url, nonce, send, removed)
        assert wire.SerializeToString() == expected.SerializeToString()
        assert DeltaDiscoveryResponse.FromString(wire.SerializeToString()) == expected
        assert (wire.type_url, wire.nonce, wire.resource_count) == (type_url, nonce, len(send))


def test_both_paths_of_the_state_machine_send_the_same_bytes() -> None:
    desired = {
        name: VersionedResource(CLUSTER, name, content_version(name.encode()), name.encode())
        for name in ("a", "b", "c")
    }
    without_b = {name: r for name, r in desired.items() if name != "b"}
    paths = [DeltaProtocol(), DeltaProtocol(wire=True)]
    sent: list[list[bytes]] = []
    kinds: list[set[type]] = []
    for state in paths:
        state.handle_request(DeltaDiscoveryRequest(type_url=CLUSTER))  # the legacy wildcard
        first = state.build_responses(lambda _: desired)
        state.resources_changed({CLUSTER: ["b"]})
        second = state.build_responses(lambda _: without_b)
        sent.append([r.SerializeToString() for r in (*first, *second)])
        kinds.append({type(r) for r in (*first, *second)})
    assert sent[0] == sent[1]
    assert len(sent[0]) == 2  # three clusters, then one removal
    assert kinds == [{DeltaDiscoveryResponse}, {WireResponse}]


def test_grpclib_accepts_both_as_the_delta_reply_type() -> None:
    assert isinstance(DeltaDiscoveryResponse(), DeltaReply)
    assert isinstance(wire_response(CLUSTER, "1", [], []), DeltaReply)
    assert not isinstance(Resource(), DeltaReply)


def test_split_responses_stay_messages() -> None:
    with pytest.raises(ValueError, match="split"):
        DeltaProtocol(max_response_bytes=1024, wire=True)
