"""The MADS answer read exactly as Prometheus' kuma_sd reads it (prometheus
``discovery/xds/client.go`` and ``kuma.go``): the request is a protobuf-JSON DiscoveryRequest
with proto field names and ``?fetch-timeout=2m``; the answer is parsed as protobuf JSON into a
DiscoveryResponse (unknown fields discarded), each ``Any`` must carry the MonitoringAssignment
type and unpack into Kuma's message (built here from mads.proto's field numbers), and every
target becomes the label set Prometheus scrapes by."""

from __future__ import annotations

import re

import aiohttp
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import Message

from kuma.mads.assignments import TYPE_URL
from kuma.mads.http import FETCH_PATH

from .test_fetch import running

pytestmark = pytest.mark.anyio

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


def _targets(response: discovery_pb2.DiscoveryResponse) -> list[dict[str, str]]:
    """kuma.go ``kumaMadsV1ResourceParser`` + ``convertKumaV1MonitoringAssignment``."""
    assert response.type_url == TYPE_URL
    cls = _assignment_class()
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


async def _prometheus_fetch(url: str, version: str) -> tuple[int, bytes]:
    request = discovery_pb2.DiscoveryRequest(
        version_info=version,
        type_url=TYPE_URL,
        node=base_pb2.Node(id="prometheus-host"),
    )
    body = json_format.MessageToJson(request, preserving_proto_field_name=True)
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            url + FETCH_PATH, data=body, headers=headers, params={"fetch-timeout": "2m"}
        ) as reply,
    ):
        return reply.status, await reply.read()


async def test_prometheus_reads_every_sidecar_target() -> None:
    async with running() as mads:
        status, raw = await _prometheus_fetch(mads.url, "")
        assert status == 200
        _assignment_class()  # the Any's type must be known to the parser, as in Prometheus
        response = discovery_pb2.DiscoveryResponse()
        json_format.Parse(raw, response, ignore_unknown_fields=True)
        targets = sorted(_targets(response), key=lambda t: t["instance"])
        common = {
            "__meta_kuma_mesh": "default",
            "__scheme__": "http",
            "__metrics_path__": "/metrics",
        }
        assert targets == [
            {
                **common,
                "__meta_kuma_service": "backend",
                "__meta_kuma_dataplane": "backend-1",
                "instance": "backend-1",
                "__address__": "10.0.0.2:5670",
                "__meta_kuma_label_kuma_io_service": "backend",
                "__meta_kuma_label_kuma_io_services": ",backend,",
            },
            {
                **common,
                "__meta_kuma_service": "web",
                "__meta_kuma_dataplane": "web-1",
                "instance": "web-1",
                "__address__": "10.0.0.1:5670",
                "__meta_kuma_label_kuma_io_service": "web",
                "__meta_kuma_label_kuma_io_services": ",web,",
            },
        ]
        # Prometheus keeps version_info and sends it back next time (the long poll of
        # test_fetch.py).
        assert response.version_info == mads.index.version
