"""The side of a KDS stream that takes resources: it subscribes to every kind with a wildcard,
declaring what its store already holds from the peer (``initial_resource_versions``), then
applies each response to its :class:`~.sink.StoreSink` and ACKs it, or NACKs it with what could
not be applied. A zone runs it on ``GlobalToZoneSync``, global on ``ZoneToGlobalSync``.
"""

from __future__ import annotations

import logging

from envoy.config.core.v3.base_pb2 import Node
from envoy.service.discovery.v3.discovery_pb2 import DeltaDiscoveryRequest

from . import codec, parts
from .sender import Pipe
from .sink import Sink

log = logging.getLogger(__name__)

#: google.rpc.Code INVALID_ARGUMENT, as Envoy NACKs.
_INVALID_ARGUMENT = 3


async def take(
    pipe: Pipe,
    sink: Sink,
    kinds: tuple[str, ...],
    peer: str,
    *,
    node: Node | None = None,
    extra: tuple[str, ...] = (),
) -> None:
    """Follow ``peer``'s resources of ``kinds`` into ``sink`` until the stream ends; ``node``
    goes with the first request (a zone's name, version and config, as Kuma's zone sends);
    ``extra``: type URLs beyond the kinds' (a zone's insights, :mod:`.insight_sync`)."""
    held = await sink.held()
    for type_url in (*parts.type_urls(kinds), *extra):
        request = DeltaDiscoveryRequest(
            type_url=type_url,
            resource_names_subscribe=["*"],
            initial_resource_versions=held.get(type_url, {}),
        )
        if node is not None:
            request.node.CopyFrom(node)
            node = None
        await pipe.send_message(request)
    log.info("KDS: following %s (holding %d resources)", peer, sum(len(v) for v in held.values()))
    while (response := await pipe.recv_message()) is not None:
        if response.resources or response.removed_resources:
            # What travelled (a reconnect sends only differences): one line per response.
            log.info(
                "KDS: %s sent %d %s, %d removed",
                peer,
                len(response.resources),
                response.type_url.removeprefix(codec.TYPE_PREFIX),
                len(response.removed_resources),
            )
        error = await sink.apply(response.type_url, response.resources, response.removed_resources)
        reply = DeltaDiscoveryRequest(type_url=response.type_url, response_nonce=response.nonce)
        if error:
            reply.error_detail.code = _INVALID_ARGUMENT
            reply.error_detail.message = error[:4000]
        await pipe.send_message(reply)
