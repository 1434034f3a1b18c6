"""Zone proxies at bootstrap: kuma-dp ``run --proxy-type=ingress`` brings a ZoneIngress
(``dataplaneResource``, Kuma universal's ``--dataplane-file``) or names a stored one
(``name``). A zone proxy belongs to no mesh: its node id is ``.<name>`` (Kuma's
``BuildProxyId("", name)``), and it authenticates with a zone token (kuma/tokens).
"""

from __future__ import annotations

from kuma.resources import ResourceKey, ValidationError, Violation, ZoneIngress, validate
from kuma.store import NotFoundError, Store, StoreError, StoreUnavailableError

from .request import BootstrapError, BootstrapRequest, decode_proxy_resource, invalid

#: Kuma's proxy type of a ZoneIngress.
INGRESS_PROXY_TYPE = "ingress"


def decode_zone_ingress(text: str, field: str = "dataplaneResource") -> ZoneIngress:
    """The ZoneIngress of a ``dataplaneResource`` string, checked with Kuma's validation.
    Raises ValidationError (the fields of the resource, or ``field`` for what is not one)."""
    return decode_proxy_resource(text, field, ZoneIngress, INGRESS_PROXY_TYPE, validate)


async def resolve_zone_ingress(request: BootstrapRequest, store: Store) -> ZoneIngress:
    """The request's ZoneIngress (checked), or the stored one named ``name``. Raises
    :class:`BootstrapError`."""
    try:
        if not request.dataplane_resource:
            if not request.name:
                raise invalid([Violation("name", "required when dataplaneResource is not given")])
            key = ResourceKey(ZoneIngress.TYPE, "", request.name)
            try:
                stored = await store.get(key)
            except NotFoundError:
                raise BootstrapError(404, "Not Found", f"{key} not found") from None
            assert isinstance(stored.resource, ZoneIngress)
            return stored.resource
        try:
            ingress = decode_zone_ingress(request.dataplane_resource)
        except ValidationError as exc:
            raise invalid(exc.violations) from None
        if request.name and request.name != ingress.name:
            raise invalid(
                [
                    Violation(
                        "name",
                        f'"{request.name}" does not match the name of the ZoneIngress in '
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
