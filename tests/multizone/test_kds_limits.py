"""KDS's ``maxMsgSize`` (kuma/kds/limits.py, kuma/xds/server/chunks.py): a type's changes are
split over responses that each fit, a resource that cannot fit is left out and reported, and a
larger message is refused with RESOURCE_EXHAUSTED, over real grpclib connections."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest
from envoy.service.discovery.v3.discovery_pb2 import DeltaDiscoveryRequest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from kuma.kds import codec
from kuma.kds.auth import ZoneAuthenticator
from kuma.kds.client import GlobalAddress, ZoneClient
from kuma.kds.limits import SizeLimitedCodec
from kuma.kds.server import serve_kds
from kuma.kds.service import CLIENT_ID, KdsSyncServiceStub
from kuma.resources import Mesh
from kuma.store.memory import MemoryStore
from kuma.tokens.live import LiveGrants
from kuma.xds.server.delta import DeltaProtocol, TypeSet
from kuma.xds.snapshot import VersionedResource

from .test_kds_resume import timeout, until

LIMIT = 8 * 1024
URL = codec.type_url("MeshTimeout")


def versioned(name: str, size: int, version: str = "1") -> VersionedResource:
    return VersionedResource(URL, name, version, b"x" * size)


def wildcard(state: DeltaProtocol, nonce: str = "") -> None:
    state.handle_request(
        DeltaDiscoveryRequest(type_url=URL, resource_names_subscribe=["*"], response_nonce=nonce)
    )


def test_a_types_changes_are_split_into_responses_that_fit(caplog: Any) -> None:
    desired = {f"t-{i:03}": versioned(f"t-{i:03}", 700) for i in range(40)}
    desired["huge"] = versioned("huge", 2 * LIMIT)
    state = DeltaProtocol(TypeSet((URL,)), max_response_bytes=LIMIT)
    wildcard(state)
    with caplog.at_level(logging.ERROR):
        responses = state.build_responses(lambda _: desired)
    assert len(responses) > 3
    assert all(r.ByteSize() <= LIMIT for r in responses)
    sent = [res.name for r in responses for res in r.resources]
    assert sent == sorted(set(desired) - {"huge"})  # each once, in order
    assert len({r.nonce for r in responses}) == len(responses)
    assert "huge" in caplog.text
    assert "more than the 8192 bytes" in caplog.text
    # Each part is ACKed on its own, none stale.
    for response in responses:
        reply = state.handle_request(
            DeltaDiscoveryRequest(type_url=URL, response_nonce=response.nonce)
        )
        assert reply is not None
        assert not reply.stale

    # The huge one shrinks: it travels; removals ride in the last response of the type.
    desired["huge"] = versioned("huge", 100, version="2")
    gone = [f"t-{i:03}" for i in range(30)]
    for name in gone:
        del desired[name]
    state.resources_changed({URL: ["huge", *gone]})
    responses = state.build_responses(lambda _: desired)
    assert [res.name for r in responses for res in r.resources] == ["huge"]
    assert [n for r in responses for n in r.removed_resources] == gone
    # Without a limit (Envoy's ADS): one response per type, whatever its size.
    plain = DeltaProtocol(TypeSet((URL,)))
    wildcard(plain)
    assert len(plain.build_responses(lambda _: desired)) == 1


@pytest.mark.anyio
async def test_kds_over_grpclib_splits_and_refuses_beyond_max_msg_size() -> None:
    glob, zone = MemoryStore(), MemoryStore()
    await glob.create(Mesh(name="default"))
    names = [f"timeout-{i:03}" for i in range(120)]  # ~40 KB of policies in all
    for name in names:
        await glob.create(timeout(name))
    async with anyio.create_task_group() as tg:
        port = await tg.start(
            lambda task_status: serve_kds(
                glob,
                ZoneAuthenticator(None, LiveGrants()),
                "127.0.0.1",
                0,
                None,
                max_msg_size=LIMIT,
                task_status=task_status,
            )
        )
        address = GlobalAddress("127.0.0.1", port, tls=False)
        client = ZoneClient(zone, "zone-1", address, "", None, max_msg_size=LIMIT)
        tg.start_soon(client.run)

        async def all_there() -> bool:
            return len((await zone.list("MeshTimeout")).items) == len(names)

        await until(zone, all_there)  # in several responses, each within the limit

        # A message over the limit is refused with what and how large.
        channel = Channel("127.0.0.1", port, codec=SizeLimitedCodec(10 * LIMIT))
        try:
            stub = KdsSyncServiceStub(channel)
            async with stub.GlobalToZoneSync.open(metadata={CLIENT_ID: "zone-2"}) as stream:
                big = DeltaDiscoveryRequest(
                    type_url=URL,
                    resource_names_subscribe=["*"],
                    initial_resource_versions={f"n{i}": "v" * 64 for i in range(200)},
                )
                await stream.send_message(big, end=True)
                with pytest.raises(GRPCError) as refused:
                    await stream.recv_message()
            assert refused.value.status is Status.RESOURCE_EXHAUSTED
            assert "more than maxMsgSize (8192 bytes)" in str(refused.value.message)
            # A protocol error gets its own status too (not grpclib's "application error").
            async with stub.GlobalToZoneSync.open(metadata={CLIENT_ID: "zone-2"}) as stream:
                await stream.send_message(DeltaDiscoveryRequest(type_url="bogus"), end=True)
                with pytest.raises(GRPCError) as broken:
                    await stream.recv_message()
            assert broken.value.status is Status.INVALID_ARGUMENT
        finally:
            channel.close()
        tg.cancel_scope.cancel()
