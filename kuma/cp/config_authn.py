"""``dpServer.authn``: how proxies prove who they are (Kuma's keys, pkg/config/dp-server)."""

from __future__ import annotations

import msgspec

from .config_base import ConfigError, Section


class PublicKey(Section):
    """A token-verification key given in the configuration (tokens signed offline)."""

    kid: str = ""
    #: The mesh whose dataplane tokens it verifies (dataplane keys only).
    mesh: str = ""
    #: The PEM itself, or ``key_file``: a file holding it.
    key: str = ""
    key_file: str = ""


class TokenValidator(Section):
    #: Verify with the signing keys kept as (Global)Secrets.
    use_secrets: bool = True
    public_keys: list[PublicKey] = msgspec.field(default_factory=list)


class DpTokenSettings(Section):
    #: ``POST /tokens/dataplane`` (and kumactl generate without --signing-key-path) works.
    enable_issuer: bool = True
    validator: TokenValidator = msgspec.field(default_factory=TokenValidator)


class DpProxyAuthn(Section):
    #: ``dpToken`` (the default) or ``none`` (any proxy may connect: labs only).
    type: str = "dpToken"
    dp_token: DpTokenSettings = msgspec.field(default_factory=DpTokenSettings)


class ZoneProxyAuthn(Section):
    #: ``zoneToken`` (the default) or ``none``.
    type: str = "zoneToken"
    zone_token: DpTokenSettings = msgspec.field(default_factory=DpTokenSettings)


class DpServerAuthn(Section):
    dp_proxy: DpProxyAuthn = msgspec.field(default_factory=DpProxyAuthn)
    zone_proxy: ZoneProxyAuthn = msgspec.field(default_factory=ZoneProxyAuthn)
    #: Envoy reads the token from kuma-dp's token file on every ADS connection (Google gRPC
    #: with file-based call credentials) instead of carrying it in its bootstrap, so a token
    #: rotated on disk is used at the next reconnect without restarting the proxy (Kuma's key).
    enable_reloadable_tokens: bool = False


def check_authn(authn: DpServerAuthn) -> None:
    for key, value, allowed in (
        ("dpServer.authn.dpProxy.type", authn.dp_proxy.type, ("dpToken", "none")),
        ("dpServer.authn.zoneProxy.type", authn.zone_proxy.type, ("zoneToken", "none")),
    ):
        if value not in allowed:
            raise ConfigError(f"{key}: must be {' or '.join(allowed)}, got {value!r}")
    for section, validator in (
        ("dpProxy.dpToken", authn.dp_proxy.dp_token.validator),
        ("zoneProxy.zoneToken", authn.zone_proxy.zone_token.validator),
    ):
        for index, public in enumerate(validator.public_keys):
            where = f"dpServer.authn.{section}.validator.publicKeys[{index}]"
            if not public.kid:
                raise ConfigError(f"{where}.kid: cannot be empty")
            if bool(public.key) == bool(public.key_file):
                raise ConfigError(f"{where}: give exactly one of key and keyFile")
            if section.startswith("dpProxy") and not public.mesh:
                raise ConfigError(f"{where}.mesh: cannot be empty")
