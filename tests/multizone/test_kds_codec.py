"""KDS's wire form of a resource (kuma/kds/codec.py) and what each side sends (mapping.py)."""

from __future__ import annotations

import msgspec
import pytest

from kuma.kds import codec, mapping
from kuma.kds.codec import KdsDecodeError
from kuma.resources import Dataplane, Mesh, ResourceKey, decode_one

TIMEOUT = """\
type: MeshTimeout
mesh: default
name: slow
labels:
  team: b
  app: a
spec:
  targetRef:
    kind: Mesh
  to:
  - targetRef:
      kind: Mesh
    default:
      connectionTimeout: 17s
"""
DATAPLANE = """\
type: Dataplane
mesh: default
name: web-01
networking:
  address: 10.0.0.1
  inbound:
  - port: 9007199254740993
    servicePort: 8080
    tags:
      kuma.io/service: web
"""


def test_round_trip_is_exact_and_canonical() -> None:
    policy = decode_one(TIMEOUT)
    sent = codec.encode(policy)
    assert sent.type_url == "kuma-py.kds/MeshTimeout"
    assert sent.name == "default/slow"
    assert codec.decode(sent.type_url, sent.name, sent.body) == policy
    # Keys sorted: the same resource written with its labels in another order is the same
    # bytes and the same version.
    reordered = TIMEOUT.replace("  team: b\n  app: a\n", "  app: a\n  team: b\n")
    assert codec.encode(decode_one(reordered)) == sent
    changed = codec.encode(decode_one(TIMEOUT.replace("17s", "18s")))
    assert changed.version != sent.version


def test_integers_travel_exactly() -> None:
    # 2**53 + 1: a float would round it. Validation refuses such a port, but the codec must
    # not be the one to change it.
    body = (
        b'{"mesh":"default","name":"web-01","networking":{"address":"10.0.0.1","inbound":'
        b'[{"port":9007199254740993,"servicePort":8080,"tags":{"kuma.io/service":"web"}}]},'
        b'"type":"Dataplane"}'
    )
    resource = codec.decode("kuma-py.kds/Dataplane", "default/web-01", body)
    assert isinstance(resource, Dataplane)
    assert resource.networking is not None
    assert resource.networking.inbound[0].port == 9007199254740993
    assert codec.canonical(resource) == body


@pytest.mark.parametrize(
    ("url", "name", "body", "message"),
    [
        ("kuma-py.kds/Nope", "x", b"{}", "names no resource kind"),
        ("type.googleapis.com/Mesh", "x", b"{}", "names no resource kind"),
        ("kuma-py.kds/Mesh", "demo", b"{not json", "Mesh 'demo'"),
        ("kuma-py.kds/Mesh", "demo", b'{"type":"Mesh","name":"other"}', "named otherwise"),
        ("kuma-py.kds/Mesh", "demo", b'{"type":"Secret","name":"demo"}', "Secret sent as a"),
        ("kuma-py.kds/Mesh", "demo", b'{"type":"Mesh","name":"demo","x":1}', "x"),
    ],
)
def test_bad_resources_are_named(url: str, name: str, body: bytes, message: str) -> None:
    with pytest.raises(KdsDecodeError, match=message):
        codec.decode(url, name, body)


def test_wire_names_map_back_to_keys() -> None:
    assert codec.key_of("kuma-py.kds/Mesh", "demo") == ResourceKey("Mesh", "", "demo")
    assert codec.key_of("kuma-py.kds/Dataplane", "default/web") == ResourceKey(
        "Dataplane", "default", "web"
    )
    with pytest.raises(KdsDecodeError, match="<mesh>/<name>"):
        codec.key_of("kuma-py.kds/Dataplane", "web")


def test_hashed_names() -> None:
    name = mapping.hashed_name("default", "web-01", "zone-1")
    prefix, _, suffix = name.rpartition("-")
    assert prefix == "web-01"
    assert len(suffix) == 16
    assert set(suffix) <= set("bcdfghjklmnpqrstvwxz2456789")
    assert name == mapping.hashed_name("default", "web-01", "zone-1")
    assert name != mapping.hashed_name("default", "web-01", "zone-2")
    assert name != mapping.hashed_name("other", "web-01", "zone-1")
    long = mapping.hashed_name("default", "a" * 300, "zone-1")
    assert len(long) <= 253
    assert long != mapping.hashed_name("default", "a" * 299 + "b", "zone-1")


def test_what_goes_down_and_up() -> None:
    policy = decode_one(TIMEOUT)
    down = mapping.to_zone(policy)
    assert down is not None
    assert down.name == mapping.hashed_name("default", "slow")
    assert down.labels == {"team": "b", "app": "a", "kuma.io/origin": "global"}
    assert mapping.to_zone(Mesh(name="demo")) == Mesh(
        name="demo", labels={"kuma.io/origin": "global"}
    )
    zones_own = decode_one(TIMEOUT.replace("team: b", "kuma.io/origin: zone"))
    assert mapping.to_zone(zones_own) is None
    assert mapping.to_zone(decode_one(DATAPLANE.replace("9007199254740993", "80"))) is None

    web = decode_one(DATAPLANE.replace("9007199254740993", "80"))
    up = mapping.to_global(web, "zone-1")
    assert up is not None
    assert up.name == mapping.hashed_name("default", "web-01", "zone-1")
    assert up.labels == {
        "kuma.io/origin": "zone",
        "kuma.io/zone": "zone-1",
        "kuma.io/display-name": "web-01",
    }
    assert mapping.zone_violation(up, "zone-1") is None
    assert mapping.zone_violation(up, "zone-2") is not None
    forged = msgspec.structs.replace(up, name="web-01")
    assert "hash" in (mapping.zone_violation(forged, "zone-1") or "")
    assert mapping.to_global(policy, "zone-1") is None
