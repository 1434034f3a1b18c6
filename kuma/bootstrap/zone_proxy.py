"""Zone proxies at bootstrap: kuma-dp ``run --proxy-type=ingress`` brings a ZoneIngress
(``dataplaneResource``, Kuma universal's ``--dataplane-file``) or names a stored one
(``name``); ``--proxy-type=egress`` likewise a ZoneEgress. A zone proxy belongs to no mesh:
its node id is ``.<name>`` (Kuma's
``BuildProxyId("", name)``), and it authenticates with a zone token (kuma/tokens).
"""

from __future__ import annotations

from kuma.resources import (
    ResourceKey,
    ValidationError,
    Violation,
    ZoneEgress,
    ZoneIngress,
    validate,
)
from kuma.store import NotFoundError, Store, StoreError, StoreUnavailableError

from .request import BootstrapError, BootstrapRequest, decode_proxy_resource, invalid

#: Kuma's proxy type of a ZoneIngress.
INGRESS_PROXY_TYPE = "ingress"
#: Kuma's proxy type of a ZoneEgress.
EGRESS_PROXY_TYPE = "egress"

ZoneProxy = ZoneIngress | ZoneEgress
#: Proxy type → the resource a zone proxy of that type brings.
ZONE_PROXY_KINDS: dict[str, type[ZoneIngress] | type[ZoneEgress]] = {
    INGRESS_PROXY_TYPE: ZoneIngress,
    EGRESS_PROXY_TYPE: ZoneEgress,
}


def decode_zone_proxy(
    text: str, proxy_type: str, field: str = "dataplaneResource"
) -> ZoneIngress | ZoneEgress:
    """The ZoneIngress or ZoneEgress (by ``proxy_type``) of a ``dataplaneResource`` string,
    checked with Kuma's validation. Raises ValidationError (the fields of the resource, or
    ``field`` for what is not one)."""
    if ZONE_PROXY_KINDS[proxy_type] is ZoneEgress:
        return decode_proxy_resource(text, field, ZoneEgress, proxy_type, validate)
    return decode_proxy_resource(text, field, ZoneIngress, proxy_type, validate)


def decode_zone_ingress(text: str, field: str = "dataplaneResource") -> ZoneIngress:
    """The ZoneIngress of a ``dataplaneResource`` string (see :func:`decode_zone_proxy`)."""
    return decode_proxy_resource(text, field, ZoneIngress, INGRESS_PROXY_TYPE, validate)


async def resolve_zone_ingress(request: BootstrapRequest, store: Store) -> ZoneIngress | ZoneEgress:
    """The request's ZoneIngress or ZoneEgress (by its proxy type, checked), or the stored one
    named ``name``. Raises :class:`BootstrapError`."""
    kind = ZONE_PROXY_KINDS[request.proxy_type]
    try:
        if not request.dataplane_resource:
            if not request.name:
                raise invalid([Violation("name", "required when dataplaneResource is not given")])
            key = ResourceKey(kind.TYPE, "", request.name)
            try:
                stored = await store.get(key)
            except NotFoundError:
                raise BootstrapError(404, "Not Found", f"{key} not found") from None
            assert isinstance(stored.resource, kind)
            return stored.resource
        try:
            ingress = decode_zone_proxy(request.dataplane_resource, request.proxy_type)
        except ValidationError as exc:
            raise invalid(exc.violations) from None
        if request.name and request.name != ingress.name:
            raise invalid(
                [
                    Violation(
                        "name",
                        f'"{request.name}" does not match the name of the {kind.TYPE} in '
                        f'dataplaneResource ("{ingress.name}")',
                    )
                ]
            )
        return ingress
    except StoreUnavailableError as exc:
        detail = f"the store is unavailable: {exc}"
        raise BootstrapError(503, "Service Unavailable", detail) from exc
    except StoreError as exc:
        raise BootstrapError(500, "Internal Server Error", f"the store failed: {exc}") from exc
