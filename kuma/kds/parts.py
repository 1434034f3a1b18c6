"""A ZoneIngress travels on KDS in parts, so a change of its ``availableServices`` sends only
the entries that changed (Kuma sends the whole resource; at 1,000 services that is ~120 KB per
change against ~110 bytes per changed entry: benchmarks/RESULTS.md).

On the wire a ZoneIngress is two kinds of delta resources:

- the ingress itself, *without* its list (``kuma-py.kds/ZoneIngress``, its usual name);
- one resource per entry (``kuma-py.kds/ZoneIngressService``), named
  ``<ingress wire name>/<entry id>``, the id a hash of the entry's mesh, tags and
  ``externalService`` (not ``instances``: a new count is a new version of the same resource).

The delta state machine then sends only the parts whose version changed, and after a reconnect
only the parts that differ. The part kind comes right after ZoneIngress in the send order
(:func:`type_urls`): an ingress arrives before its entries and loses them before it goes.
The receiver keeps the whole resource in its store (Kuma's shape: readers and the API see one
ZoneIngress with its list, in Kuma's order): the ingress part keeps the stored list, entry
parts are merged into it (:func:`merge`). Two entries with the same mesh, tags and
``externalService`` (never computed by a control plane) travel as one.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Iterator, Mapping

import msgspec
import orjson

from kuma import jsonbytes
from kuma.multizone.available_services import kuma_order
from kuma.resources import Resource, ResourceKey, ZoneIngress
from kuma.resources.model import AvailableService
from kuma.xds.snapshot import VersionedResource, content_version

from . import codec
from .codec import KdsDecodeError

ENTRY_URL = codec.TYPE_PREFIX + "ZoneIngressService"
_INGRESS_URL = codec.type_url(ZoneIngress.TYPE)


def type_urls(kinds: Iterable[str]) -> tuple[str, ...]:
    """The type URLs a stream of ``kinds`` carries: ZoneIngress entries right after
    ZoneIngress."""
    urls: list[str] = []
    for url in codec.type_urls(kinds):
        urls.append(url)
        if url == _INGRESS_URL:
            urls.append(ENTRY_URL)
    return tuple(urls)


@functools.lru_cache(maxsize=1 << 16)
def _encoded(raw: bytes) -> tuple[str, bytes, str]:
    """An entry's id, canonical body and version, from its plain JSON (cached: a change of a
    1,000-entry list re-encodes only the entries that changed)."""
    entry = msgspec.json.decode(raw, type=AvailableService)
    identity = orjson.dumps([entry.mesh, sorted(entry.tags.items()), entry.external_service])
    body = jsonbytes.dumps(msgspec.to_builtins(entry), sort_keys=True)  # kept while offered
    return hashlib.blake2b(identity, digest_size=8).hexdigest(), body, content_version(body)


def entry_id(entry: AvailableService) -> str:
    return _encoded(msgspec.json.encode(entry))[0]


def entry_name(ingress: str, entry: AvailableService) -> str:
    return f"{ingress}/{entry_id(entry)}"


def encode_all(resource: Resource) -> Iterator[VersionedResource]:
    """``resource`` as it travels: itself, or a ZoneIngress's parts (the ingress first)."""
    if not isinstance(resource, ZoneIngress):
        yield codec.encode(resource)
        return
    ingress = codec.encode(msgspec.structs.replace(resource, available_services=()))
    yield ingress
    for entry in resource.available_services:
        ident, body, version = _encoded(msgspec.json.encode(entry))
        yield VersionedResource(ENTRY_URL, f"{ingress.name}/{ident}", version, body)


def held(resource: Resource) -> Iterator[tuple[str, str, str]]:
    """(type URL, wire name, version) of the parts a stored resource stands for."""
    for encoded in encode_all(resource):
        yield encoded.type_url, encoded.name, encoded.version


def ingress_of(name: str) -> str:
    """The ingress wire name an entry's wire name belongs to."""
    ingress, sep, ident = name.rpartition("/")
    if not sep or not ingress or not ident:
        raise KdsDecodeError(f"{name[:200]!r}: an entry is named <ingress>/<id> on KDS")
    return ingress


def decode_entry(name: str, body: bytes) -> AvailableService:
    try:
        entry = msgspec.json.decode(body, type=AvailableService)
    except msgspec.DecodeError as exc:
        raise KdsDecodeError(f"entry {name[:200]!r}: {exc}") from None
    if entry_name(ingress_of(name), entry) != name:
        raise KdsDecodeError(f"{name[:200]!r}: the entry inside is named otherwise")
    return entry


def ingress_key(name: str) -> ResourceKey:
    return codec.key_of(_INGRESS_URL, name)


def keep_list(received: ZoneIngress, stored: ZoneIngress | None) -> ZoneIngress:
    """The ingress part as stored: the list is the entries' (kept from the stored copy)."""
    services = () if stored is None else stored.available_services
    return msgspec.structs.replace(received, available_services=services)


def merge(
    ingress: ZoneIngress, upserts: Mapping[str, AvailableService], removed: Iterable[str]
) -> ZoneIngress:
    """``ingress`` with entries replaced, added (by id) and removed, in Kuma's order."""
    by_id = {entry_id(e): e for e in ingress.available_services}
    for ident in removed:
        by_id.pop(ident, None)
    by_id.update(upserts)

    def order(entry: AvailableService) -> tuple[bool, str, str, tuple[tuple[str, str], ...]]:
        tags = tuple(sorted(entry.tags.items()))
        return (entry.external_service, *kuma_order(entry.mesh, tags), tags)

    ordered = sorted(by_id.values(), key=order)
    return msgspec.structs.replace(ingress, available_services=tuple(ordered))
