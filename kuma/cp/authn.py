"""Dataplane authentication of kuma-cp, built from ``dpServer.authn``: the key ring, the
verifier, the live grants and the ADS authenticator (kuma/tokens), and the tasks that keep
them current."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
from anyio.abc import TaskStatus

from kuma.api.tokens import IssuerSettings
from kuma.store import Store
from kuma.tokens.authenticator import TokenAuthenticator
from kuma.tokens.keyring import ZONE, TokenKeys
from kuma.tokens.keys import (
    ZONE_KEY_PREFIX,
    ZONE_PUBLIC_KEY_PREFIX,
    SigningKeyError,
    load_public_key,
)
from kuma.tokens.live import LiveGrants
from kuma.tokens.signing import TokenSecrets
from kuma.tokens.verifier import TokenVerifier

from .config_authn import DpServerAuthn, PublicKey, TokenValidator
from .config_base import ConfigError


@dataclass
class Authentication:
    authenticator: TokenAuthenticator
    issuer: IssuerSettings
    keys: TokenKeys
    live: LiveGrants
    secrets: TokenSecrets

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Follow the store (keys, revocations, meshes) and end expiring streams; started once
        the key ring holds every stored key."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.live.run)
            await tg.start(self.secrets.run)
            task_status.started()


def _pem(key: PublicKey, where: str) -> bytes:
    if key.key:
        pem = key.key.encode()
    else:
        try:
            pem = Path(key.key_file).read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"{where}.keyFile: cannot read {key.key_file}: {exc.strerror}"
            ) from None
    try:
        load_public_key(pem)
    except SigningKeyError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return pem


def _static_keys(
    validator: TokenValidator, section: str, zone: bool
) -> dict[str, dict[str, bytes]]:
    keys: dict[str, dict[str, bytes]] = {}
    for index, key in enumerate(validator.public_keys):
        where = f"dpServer.authn.{section}.validator.publicKeys[{index}]"
        keys.setdefault(ZONE if zone else key.mesh, {})[key.kid] = _pem(key, where)
    return keys


def build_authentication(
    store: Store,
    authn: DpServerAuthn,
    *,
    on_refused: Callable[[str], None] | None = None,
    on_closed: Callable[[str], None] | None = None,
    federated: bool = False,
    zone: str = "",
) -> Authentication:
    """``federated`` (a zone connected to global): signing keys come from global over KDS; this
    control plane never makes its own (Kuma: pkg/defaults, not in a federated zone) and checks
    zone tokens with the public keys global sent (Kuma: NewZoneTokenValidator)."""
    dp_token = authn.dp_proxy.dp_token
    zone_token = authn.zone_proxy.zone_token
    static = _static_keys(dp_token.validator, "dpProxy.dpToken", zone=False)
    static.update(_static_keys(zone_token.validator, "zoneProxy.zoneToken", zone=True))
    # useSecrets is one switch per kind in Kuma; here the stored keys serve both or neither
    # unless both kinds keep the default.
    use_secrets = dp_token.validator.use_secrets and zone_token.validator.use_secrets
    zone_prefix = ZONE_PUBLIC_KEY_PREFIX if federated else ZONE_KEY_PREFIX
    keys = TokenKeys(static, use_secrets=use_secrets, zone_key_prefix=zone_prefix)
    live = LiveGrants(on_closed=on_closed)
    keys.listen(live)
    authenticator = TokenAuthenticator(
        store,
        TokenVerifier(keys),
        live,
        zone=zone,
        on_refused=on_refused,
        dataplanes=authn.dp_proxy.type != "none",
        zone_proxies=authn.zone_proxy.type != "none",
    )
    issuer = IssuerSettings(dataplane=dp_token.enable_issuer, zone=zone_token.enable_issuer)
    secrets = TokenSecrets(store, keys, create_keys=not federated)
    return Authentication(authenticator, issuer, keys, live, secrets)
