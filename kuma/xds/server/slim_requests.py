"""The ADS requests as kuma-cp reads them: Envoy's, without ``node.extensions``.

Every Envoy lists all the extensions it was built with in the first request of each ADS
stream: 516 entries, 59.7 KB of the 61.1 KB ``DeltaDiscoveryRequest`` Envoy 1.40 sends. kuma-cp
never reads them (Kuma does not either), yet decoding them into messages took ~28 µs of every
connecting or reconnecting proxy in a tight loop and about 3.4 % of kuma-cp's CPU in a
10,000-sidecar convergence (py-spy, benchmarks/RESULTS.md); read as these types, they stay
an unknown field's bytes (~1 µs) and go with the message.

The types are built at import from the xds-protos descriptors themselves (``CopyToProto``): the
same field numbers, names and types, so the same wire format, minus the one field. The server
reads each stream's requests as them; every field kuma-cp reads (``node.id``, its metadata,
``user_agent_build_version``, subscriptions, nonces, ``error_detail``) is the real message type
(``Struct``, ``BuildVersion``, ``Status``), only ``Node`` and the requests themselves are
copies. Clients (kuma-dp's Envoy, kuma-load, tests) send the real types.
"""

from __future__ import annotations

from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import (  # type: ignore[import-untyped, unused-ignore]
    descriptor_pb2,
    descriptor_pool,
    message_factory,
)

PACKAGE = "kuma.xds.server.slim"
#: The fields left out, by message.
_DROPPED = {"envoy.config.core.v3.Node": frozenset({"extensions"})}


def _copied(descriptor: Any, renamed: dict[str, str]) -> Any:
    """``descriptor`` as a ``DescriptorProto`` in :data:`PACKAGE`: the dropped fields and every
    option left out (a map entry keeps its ``map_entry``), references to the renamed messages
    and to its own nested types pointed at the copies."""
    proto = descriptor_pb2.DescriptorProto()
    descriptor.CopyToProto(proto)
    dropped = _DROPPED.get(descriptor.full_name, frozenset())
    kept = [f for f in proto.field if f.name not in dropped]
    del proto.field[:]
    proto.field.extend(kept)
    own = f".{descriptor.full_name}."
    copy = f".{PACKAGE}.{descriptor.name}."

    def retarget(message: Any) -> None:
        map_entry = message.options.map_entry  # a map's own entry type, at any depth
        message.ClearField("options")
        if map_entry:
            message.options.map_entry = True
        for field in message.field:
            field.ClearField("options")
            if field.type_name in renamed:
                field.type_name = renamed[field.type_name]
            elif field.type_name.startswith(own):
                field.type_name = copy + field.type_name[len(own) :]
        for nested in message.nested_type:
            retarget(nested)

    retarget(proto)
    return proto


def _files_referenced(descriptor: Any, into: set[str]) -> None:
    for field in descriptor.fields:
        for referenced in (field.message_type, field.enum_type):
            if referenced is not None:
                into.add(referenced.file.name)
    for nested in descriptor.nested_types:
        _files_referenced(nested, into)


def _build() -> tuple[Any, Any]:
    originals = [
        base_pb2.Node.DESCRIPTOR,
        discovery_pb2.DiscoveryRequest.DESCRIPTOR,
        discovery_pb2.DeltaDiscoveryRequest.DESCRIPTOR,
    ]
    renamed = {f".{d.full_name}": f".{PACKAGE}.{d.name}" for d in originals}
    file = descriptor_pb2.FileDescriptorProto(
        name="kuma/xds/server/slim_requests.proto", package=PACKAGE, syntax="proto3"
    )
    dependencies: set[str] = set()
    for original in originals:
        file.message_type.append(_copied(original, renamed))
        _files_referenced(original, dependencies)
    file.dependency.extend(sorted(dependencies - {d.file.name for d in originals}))
    pool = descriptor_pool.Default()
    pool.AddSerializedFile(file.SerializeToString())

    def message_class(name: str) -> Any:
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.{name}"))

    return message_class("DiscoveryRequest"), message_class("DeltaDiscoveryRequest")


#: ``DiscoveryRequest`` and ``DeltaDiscoveryRequest`` as kuma-cp reads them.
SlimDiscoveryRequest, SlimDeltaDiscoveryRequest = _build()
