"""Kuma's ``kuma.mesh.v1alpha1.KDSSyncService`` for grpclib, written by hand (Kuma's
``api/mesh/v1alpha1/kds.proto`` names the service and its two methods; the messages are
Envoy's delta xDS ones from xds-protos).

- ``GlobalToZoneSync``: the zone sends ``DeltaDiscoveryRequest`` s, global answers with
  ``DeltaDiscoveryResponse`` s (global's resources go down).
- ``ZoneToGlobalSync``: the zone sends ``DeltaDiscoveryResponse`` s, global answers with
  ``DeltaDiscoveryRequest`` s (the zone's resources go up; global subscribes).

The zone always dials out, so both streams cross the same connection from zone to global.
"""

from __future__ import annotations

import abc
from typing import Any

import grpclib.client
import grpclib.const
import grpclib.server
from envoy.service.discovery.v3.discovery_pb2 import (
    DeltaDiscoveryRequest,
    DeltaDiscoveryResponse,
)

SERVICE = "kuma.mesh.v1alpha1.KDSSyncService"
GLOBAL_TO_ZONE = f"/{SERVICE}/GlobalToZoneSync"
ZONE_TO_GLOBAL = f"/{SERVICE}/ZoneToGlobalSync"
#: The metadata key a zone names itself with (Kuma's ``client-id``).
CLIENT_ID = "client-id"
#: The metadata key of the zone token (beyond Kuma's OSS, which has TLS only).
AUTHORIZATION = "authorization"

ServerStream = grpclib.server.Stream[Any, Any]
ClientStream = grpclib.client.Stream[Any, Any]


class KdsSyncServiceBase(abc.ABC):
    @abc.abstractmethod
    async def GlobalToZoneSync(self, stream: ServerStream) -> None: ...

    @abc.abstractmethod
    async def ZoneToGlobalSync(self, stream: ServerStream) -> None: ...

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        return {
            GLOBAL_TO_ZONE: grpclib.const.Handler(
                self.GlobalToZoneSync,
                grpclib.const.Cardinality.STREAM_STREAM,
                DeltaDiscoveryRequest,
                DeltaDiscoveryResponse,
            ),
            ZONE_TO_GLOBAL: grpclib.const.Handler(
                self.ZoneToGlobalSync,
                grpclib.const.Cardinality.STREAM_STREAM,
                DeltaDiscoveryResponse,
                DeltaDiscoveryRequest,
            ),
        }


class KdsSyncServiceStub:
    def __init__(self, channel: grpclib.client.Channel) -> None:
        self.GlobalToZoneSync: grpclib.client.StreamStreamMethod[Any, Any] = (
            grpclib.client.StreamStreamMethod(
                channel, GLOBAL_TO_ZONE, DeltaDiscoveryRequest, DeltaDiscoveryResponse
            )
        )
        self.ZoneToGlobalSync: grpclib.client.StreamStreamMethod[Any, Any] = (
            grpclib.client.StreamStreamMethod(
                channel, ZONE_TO_GLOBAL, DeltaDiscoveryResponse, DeltaDiscoveryRequest
            )
        )
