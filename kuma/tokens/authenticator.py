"""kuma-cp's ADS authenticator: dataplane tokens for sidecars, zone tokens for zone proxies
(Kuma's ``pkg/xds/auth/universal``), plus the proxy-type check Kuma leaves out.

The credential is the gRPC metadata ``authorization`` (the bootstrap puts the token there; a
``Bearer`` prefix is accepted). The Dataplane it is checked against is the one in the node
metadata (``dataplane.resource``), else the stored one. Checks, in order: the token (signature
by its kid's key in the proxy's mesh, expiry, revocation), then each non-empty claim against the
Dataplane: ``Name``, ``Mesh``, ``Tags`` (every tag of the token must be on the Dataplane, with
all of the Dataplane's values of it allowed), ``Type``.

A refusal is logged once, naming the node and the reason (never the token), and counted by
reason; the stream ends with UNAUTHENTICATED before anything is registered or sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from kuma.bootstrap.request import decode_proxy_dataplane
from kuma.resources import Dataplane, ResourceKey, ValidationError
from kuma.store import NotFoundError, Store, StoreError
from kuma.xds.server.authn import FOREVER, StreamGrant, Unauthenticated
from kuma.xds.server.node import parse_node_id

from .claims import (
    ZONE_SCOPES,
    DataplaneIdentity,
    TokenRejected,
    dataplane_identity,
    unverified_claims,
    zone_identity,
)
from .keyring import ZONE
from .live import LiveGrants
from .verifier import TokenVerifier

log = logging.getLogger("kuma.tokens")

AUTHORIZATION = "authorization"
RESOURCE_METADATA = "dataplane.resource"
PROXY_TYPE_METADATA = "dataplane.proxyType"
DATAPLANE = "dataplane"


def _metadata_string(node: Any, key: str) -> str:
    if not node.HasField("metadata"):
        return ""
    value = node.metadata.fields.get(key)
    if value is None or value.WhichOneof("kind") != "string_value":
        return ""
    text: str = value.string_value
    return text


def _token(metadata: Mapping[str, str | bytes]) -> str:
    value = metadata.get(AUTHORIZATION)
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    token = (value or "").strip()
    if token[:7].lower() == "bearer ":
        token = token[7:].strip()
    if not token:
        raise TokenRejected(
            "no_token", "no token (the stream carries no 'authorization' gRPC metadata)"
        )
    return token


def tag_violation(allowed: Mapping[str, tuple[str, ...]], dataplane: Dataplane) -> str | None:
    """Kuma's rule: every tag of the token is on the Dataplane, and every value the Dataplane
    has for it is one the token allows."""
    values: dict[str, set[str]] = {}
    networking = dataplane.networking
    if networking is not None:
        sources = [i.tags for i in networking.inbound]
        if networking.gateway is not None:
            sources.append(networking.gateway.tags)
        for tags in sources:
            for key, value in tags.items():
                values.setdefault(key, set()).add(value)
    for tag, permitted in sorted(allowed.items()):
        present = values.get(tag)
        if present is None:
            return f"the Dataplane has no tag {tag!r}, which the token requires"
        for value in sorted(present - set(permitted)):
            return (
                f"the Dataplane's tag {tag}={value} is not allowed by the token "
                f"(allowed: {', '.join(permitted)})"
            )
    return None


class TokenAuthenticator:
    """A :class:`kuma.xds.server.authn.StreamAuthenticator` for dataplane and zone tokens."""

    def __init__(
        self,
        store: Store,
        verifier: TokenVerifier,
        live: LiveGrants,
        *,
        zone: str = "",
        on_refused: Callable[[str], None] | None = None,
        dataplanes: bool = True,
        zone_proxies: bool = True,
    ) -> None:
        """``dataplanes``/``zone_proxies``: whether that kind of proxy needs a token
        (``dpServer.authn.dpProxy.type``/``zoneProxy.type``)."""
        self._dataplanes = dataplanes
        self._zone_proxies = zone_proxies
        self._store = store
        self._verifier = verifier
        self._live = live
        self._zone = zone
        self._on_refused = on_refused

    async def authenticate(
        self, node_id: str, node: Any, metadata: Mapping[str, str | bytes]
    ) -> StreamGrant:
        proxy_type = _metadata_string(node, PROXY_TYPE_METADATA) or DATAPLANE
        zone_proxy = proxy_type in ZONE_SCOPES
        if not (self._zone_proxies if zone_proxy else self._dataplanes):
            return FOREVER
        try:
            token = _token(metadata)
            if zone_proxy:
                return self._zone_proxy(token, proxy_type, node_id)
            return await self._dataplane(token, proxy_type, node_id, node)
        except TokenRejected as refused:
            log.warning("refusing the ADS stream of %s: %s", node_id, refused.reason)
            if self._on_refused is not None:
                self._on_refused(refused.code)
            raise Unauthenticated(refused.reason) from None

    async def _dataplane(self, token: str, proxy_type: str, node_id: str, node: Any) -> StreamGrant:
        dataplane = await self._dataplane_of(node_id, node)
        try:
            verified = self._verifier.verify(token, dataplane.mesh)
        except TokenRejected as rejected:
            # A token for another mesh names a kid of that mesh: say so rather than "bad
            # signature" (the claim is only read to explain; nothing is granted on it).
            claimed = str(unverified_claims(token).get("Mesh") or "")
            if rejected.code in ("bad_signature", "unknown_kid") and claimed not in (
                "",
                dataplane.mesh,
            ):
                raise TokenRejected(
                    "mesh",
                    f"the token is for mesh {claimed}, the Dataplane is in mesh {dataplane.mesh}",
                ) from None
            raise
        identity = dataplane_identity(verified.claims)
        _check_identity(identity, dataplane, proxy_type)
        return self._live.grant(dataplane.mesh, verified, node_id)

    async def _dataplane_of(self, node_id: str, node: Any) -> Dataplane:
        text = _metadata_string(node, RESOURCE_METADATA)
        if text:
            try:
                dataplane = decode_proxy_dataplane(text, field=RESOURCE_METADATA)
            except ValidationError:
                raise TokenRejected(
                    "no_dataplane", "the Dataplane in the node metadata is not valid"
                ) from None
            if f"{dataplane.mesh}.{dataplane.name}" == node_id:
                return dataplane
            raise TokenRejected("name", "node.id does not name the Dataplane in the node metadata")
        mesh, name = parse_node_id(node_id)
        try:
            stored = await self._store.get(ResourceKey(Dataplane.TYPE, mesh, name))
        except NotFoundError:
            raise TokenRejected(
                "no_dataplane",
                f"no Dataplane {mesh}/{name} to check the token against (apply it first, or "
                "start kuma-dp with the Dataplane)",
            ) from None
        except StoreError as exc:
            raise TokenRejected("no_dataplane", f"cannot read the Dataplane: {exc}") from None
        assert isinstance(stored.resource, Dataplane)
        return stored.resource

    def _zone_proxy(self, token: str, proxy_type: str, node_id: str) -> StreamGrant:
        verified = self._verifier.verify(token, ZONE)
        identity = zone_identity(verified.claims)
        if proxy_type not in identity.scope:
            raise TokenRejected(
                "scope",
                f"a {proxy_type} is out of the token's scope ({', '.join(identity.scope)})",
            )
        if identity.zone and identity.zone != self._zone:
            raise TokenRejected(
                "zone", f"the token is for zone {identity.zone}, this is zone {self._zone!r}"
            )
        return self._live.grant(ZONE, verified, node_id)


def _check_identity(identity: DataplaneIdentity, dataplane: Dataplane, proxy_type: str) -> None:
    if identity.name and identity.name != dataplane.name:
        raise TokenRejected("name", f"the token is for proxy {identity.name}, not {dataplane.name}")
    if identity.mesh and identity.mesh != dataplane.mesh:
        raise TokenRejected(
            "mesh",
            f"the token is for mesh {identity.mesh}, the Dataplane is in mesh {dataplane.mesh}",
        )
    problem = tag_violation(identity.tags, dataplane)
    if problem is not None:
        raise TokenRejected("tags", problem)
    # Beyond Kuma, which never checks it: a token for a zone proxy does not admit a sidecar.
    if identity.type and identity.type != proxy_type:
        raise TokenRejected(
            "type", f"the token is for proxy type {identity.type}, this proxy is a {proxy_type}"
        )
