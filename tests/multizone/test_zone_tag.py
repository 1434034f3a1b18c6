"""``kuma.io/zone`` on a zone's Dataplanes (kuma/multizone/zone_tag.py)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from kuma.multizone import ZONE_TAG, Authoring, stamp_zone
from kuma.resources import Dataplane, ValidationError, ZoneIngress, from_document


def dataplane(inbound_tags: list[dict[str, str]] | None = None, **networking: Any) -> Dataplane:
    tags = inbound_tags if inbound_tags is not None else [{"kuma.io/service": "web"}]
    document: dict[str, Any] = {
        "type": "Dataplane",
        "mesh": "default",
        "name": "web-01",
        "networking": {
            "address": "10.0.0.1",
            "inbound": [
                {"port": 10000 + i, "servicePort": 8000 + i, "tags": t} for i, t in enumerate(tags)
            ],
            **networking,
        },
    }
    if "gateway" in networking:
        del document["networking"]["inbound"]
    resource = from_document(document)
    assert isinstance(resource, Dataplane)
    return resource


def test_every_inbound_gets_the_zone() -> None:
    original = dataplane([{"kuma.io/service": "web"}, {"kuma.io/service": "admin", "v": "2"}])
    stamped = stamp_zone(original, "zone-1")
    assert stamped.networking is not None
    assert [dict(i.tags) for i in stamped.networking.inbound] == [
        {"kuma.io/service": "web", ZONE_TAG: "zone-1"},
        {"kuma.io/service": "admin", "v": "2", ZONE_TAG: "zone-1"},
    ]
    # The input is not changed (resources are frozen values).
    assert original.networking is not None
    assert ZONE_TAG not in original.networking.inbound[0].tags


def test_a_gateway_gets_the_zone() -> None:
    gateway = dataplane(gateway={"type": "DELEGATED", "tags": {"kuma.io/service": "edge"}})
    stamped = stamp_zone(gateway, "zone-1")
    assert stamped.networking is not None
    assert stamped.networking.gateway is not None
    assert stamped.networking.gateway.tags == {"kuma.io/service": "edge", ZONE_TAG: "zone-1"}


def test_no_zone_changes_nothing() -> None:
    original = dataplane([{"kuma.io/service": "web", ZONE_TAG: "anything"}])
    assert stamp_zone(original, "") is original


def test_the_same_zone_is_accepted_as_is() -> None:
    original = dataplane([{"kuma.io/service": "web", ZONE_TAG: "zone-1"}])
    assert stamp_zone(original, "zone-1") is original


def test_another_zone_is_refused_naming_the_field() -> None:
    forged = dataplane([{"kuma.io/service": "web"}, {"kuma.io/service": "b", ZONE_TAG: "zone-2"}])
    with pytest.raises(ValidationError) as caught:
        stamp_zone(forged, "zone-1")
    [violation] = caught.value.violations
    assert violation.field == 'networking.inbound[1].tags["kuma.io/zone"]'
    assert "'zone-2'" in violation.message
    assert "'zone-1'" in violation.message


def test_a_forged_gateway_zone_is_refused() -> None:
    forged = dataplane(gateway={"tags": {"kuma.io/service": "edge", ZONE_TAG: "zone-2"}})
    with pytest.raises(ValidationError, match=r'networking\.gateway\.tags\["kuma\.io/zone"\]'):
        stamp_zone(forged, "zone-1")


def test_served_config_overrides_a_forged_zone() -> None:
    forged = dataplane([{"kuma.io/service": "web", ZONE_TAG: "zone-2"}])
    served = stamp_zone(forged, "zone-1", strict=False)
    assert served.networking is not None
    assert served.networking.inbound[0].tags[ZONE_TAG] == "zone-1"


def test_a_zone_proxy_written_through_the_api_gets_this_zone() -> None:
    """The REST door as registration: a zone CP sets a ZoneIngress's ``zone`` and refuses one
    naming another zone; standalone changes nothing."""
    ingress = from_document({"type": "ZoneIngress", "name": "zi-1"})
    assert isinstance(ingress, ZoneIngress)
    zone = Authoring(mode="zone", zone="zone-1")
    admitted = zone.admit(ingress, create=True)
    assert isinstance(admitted, ZoneIngress)
    assert admitted.zone == "zone-1"
    with pytest.raises(ValidationError, match="zone: cannot be 'zone-2'"):
        zone.admit(msgspec.structs.replace(ingress, zone="zone-2"), create=True)
    assert Authoring().admit(ingress, create=True) == ingress
