"""The ADS request types kuma-cp reads (``kuma.xds.server.slim_requests``): Envoy's own, minus
``node.extensions``."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.config.core.v3.base_pb2 import Node
from envoy.service.discovery.v3.discovery_pb2 import DeltaDiscoveryRequest, DiscoveryRequest
from google.protobuf.json_format import MessageToDict

from kuma.load.envoy_node import envoy_node
from kuma.xds.server.slim_requests import SlimDeltaDiscoveryRequest, SlimDiscoveryRequest


def _fields(descriptor: Any) -> dict[str, tuple[int, int, str]]:
    return {
        f.name: (
            f.number,
            f.type,
            "" if f.message_type is None else f.message_type.name,
        )
        for f in descriptor.fields
    }


@pytest.mark.parametrize(
    ("real", "slim"),
    [(DeltaDiscoveryRequest, SlimDeltaDiscoveryRequest), (DiscoveryRequest, SlimDiscoveryRequest)],
)
def test_the_same_fields_as_envoys_but_the_nodes_extensions(real: Any, slim: Any) -> None:
    assert _fields(slim.DESCRIPTOR) == _fields(real.DESCRIPTOR)
    node_fields = _fields(Node.DESCRIPTOR)
    del node_fields["extensions"]
    assert _fields(slim.DESCRIPTOR.fields_by_name["node"].message_type) == node_fields


@pytest.mark.parametrize(
    ("real", "slim"),
    [(DeltaDiscoveryRequest, SlimDeltaDiscoveryRequest), (DiscoveryRequest, SlimDiscoveryRequest)],
)
def test_envoys_first_request_reads_the_same_but_the_extensions(real: Any, slim: Any) -> None:
    request = real(node=envoy_node("default.web-1", "web"), type_url="type.example/Cluster")
    request.node.locality.zone = "zone-1"
    request.node.metadata.fields["dataplane.proxyType"].string_value = "dataplane"
    request.node.dynamic_parameters["x"].params["k"] = "v"
    request.response_nonce = "7"
    request.error_detail.message = "rejected"
    if real is DeltaDiscoveryRequest:
        request.initial_resource_versions["web"] = "v1"
        request.resource_names_subscribe.append("web")
    else:
        request.resource_names.append("web")
    assert len(request.node.extensions) > 100  # what Envoy 1.40 lists
    read = slim.FromString(request.SerializeToString())
    expected = real()
    expected.CopyFrom(request)
    expected.node.ClearField("extensions")
    assert MessageToDict(read) == MessageToDict(expected)
    assert read.node.HasField("metadata")
    assert read.node.user_agent_build_version.version.major_number == 1
