"""A MADS client that does what Prometheus' kuma_sd does (prometheus ``discovery/xds/client.go``
and ``kuma.go``): the request is a protobuf-JSON DiscoveryRequest with proto field names and
``?fetch-timeout=2m``; the answer is parsed as protobuf JSON into a DiscoveryResponse (unknown
fields discarded), each ``Any`` must carry the MonitoringAssignment type and unpack into Kuma's
message (built here from mads.proto's field numbers), and every target becomes the label set
Prometheus scrapes by (``__address__``, ``__scheme__``, ``__metrics_path__``, ...)."""

from __future__ import annotations

import re
import urllib.request

from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import Message

from kuma.mads.assignments import TYPE_URL
from kuma.mads.http import FETCH_PATH

_F = descriptor_pb2.FieldDescriptorProto


_PACKAGE = ".kuma.observability.v1.MonitoringAssignment"


def _repeated(message: descriptor_pb2.DescriptorProto, name: str, number: int, kind: str) -> None:
    message.field.add(
        name=name,
        number=number,
        type=_F.TYPE_MESSAGE,
        label=_F.LABEL_REPEATED,
        type_name=f"{_PACKAGE}.{kind}",
    )


def _labels(message: descriptor_pb2.DescriptorProto, owner: str) -> None:
    """``map<string, string> labels = 5`` (a map is a repeated nested entry message)."""
    entry = message.nested_type.add(name="LabelsEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    _repeated(message, "labels", 5, owner + "LabelsEntry")


def _assignment_class() -> type[Message]:
    """``kuma.observability.v1.MonitoringAssignment`` (api/observability/v1/mads.proto)."""
    pool = descriptor_pool.Default()
    name = "kuma.observability.v1.MonitoringAssignment"
    try:
        descriptor = pool.FindMessageTypeByName(name)
    except KeyError:
        file = descriptor_pb2.FileDescriptorProto(
            name="kuma/observability/v1/mads_test.proto",
            package="kuma.observability.v1",
            syntax="proto3",
        )
        message = file.message_type.add(name="MonitoringAssignment")
        target = message.nested_type.add(name="Target")
        for field_name, number in (("name", 1), ("scheme", 2), ("address", 3)):
            target.field.add(name=field_name, number=number, type=_F.TYPE_STRING)
        target.field.add(name="metrics_path", number=4, type=_F.TYPE_STRING)
        _labels(target, "Target.")
        message.field.add(name="mesh", number=2, type=_F.TYPE_STRING)
        message.field.add(name="service", number=3, type=_F.TYPE_STRING)
        _repeated(message, "targets", 4, "Target")
        _labels(message, "")
        pool.Add(file)
        descriptor = pool.FindMessageTypeByName(name)
    return message_factory.GetMessageClass(descriptor)


def _sanitize(name: str) -> str:
    # Prometheus' strutil.SanitizeLabelName.
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def targets(raw: bytes) -> list[dict[str, str]]:
    """kuma.go ``kumaMadsV1ResourceParser`` + ``convertKumaV1MonitoringAssignment``."""
    cls = _assignment_class()  # the Any's type must be known to the parser, as in Prometheus
    response = discovery_pb2.DiscoveryResponse()
    json_format.Parse(raw, response, ignore_unknown_fields=True)
    assert response.type_url == TYPE_URL
    out = []
    for resource in response.resources:
        assignment = cls()
        assert resource.Unpack(assignment)
        common = {
            "__meta_kuma_label_" + _sanitize(k): v
            for k, v in assignment.labels.items()  # type: ignore[attr-defined]
        }
        common["__meta_kuma_mesh"] = assignment.mesh  # type: ignore[attr-defined]
        common["__meta_kuma_service"] = assignment.service  # type: ignore[attr-defined]
        for target in assignment.targets:  # type: ignore[attr-defined]
            labels = {"__meta_kuma_label_" + _sanitize(k): v for k, v in target.labels.items()}
            labels.update(common)
            labels["__meta_kuma_dataplane"] = target.name
            labels["__address__"] = target.address
            labels["instance"] = target.name
            labels["__scheme__"] = target.scheme
            labels["__metrics_path__"] = target.metrics_path
            out.append(labels)
    return out


QUERY = "?fetch-timeout=2m"
HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


def request_body(version: str) -> str:
    request = discovery_pb2.DiscoveryRequest(
        version_info=version, type_url=TYPE_URL, node=base_pb2.Node(id="prometheus-host")
    )
    return json_format.MessageToJson(request, preserving_proto_field_name=True)


def discover(server: str) -> list[dict[str, str]]:
    """One first fetch (no version yet) from ``server`` (``http://host:5676``)."""
    request = urllib.request.Request(
        server + FETCH_PATH + QUERY, data=request_body("").encode(), headers=HEADERS
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert reply.status == 200
        return targets(reply.read())
