"""``kumactl generate``: dataplane tokens, zone tokens (from the control plane, or signed
offline with ``--signing-key-path`` and ``--kid``) and signing keys.

Offline signing needs no control plane at all (Kuma's advice for zones whose global CP is out
of reach): the control plane then verifies with the public key given in
``dpServer.authn.dpProxy.dpToken.validator.publicKeys``, or with the same key stored as the
mesh's signing-key Secret.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from pathlib import Path

from kuma.resources.validation import parse_duration_ns
from kuma.tokens.claims import (
    DEFAULT_VALIDITY,
    ZONE_SCOPES,
    DataplaneIdentity,
    ZoneIdentity,
    dataplane_claims,
    parse_tags,
    sign,
    zone_claims,
)
from kuma.tokens.keys import SigningKeyError, load_private_key, new_signing_key

from .commands import Session
from .errors import ApiCallError, CliError

SIGNING_KEY_FORMATS = ("pem-base64", "pem")


def _valid_for(text: str | None, *, required: bool) -> float:
    if not text:
        if required:
            raise CliError("--valid-for is required (e.g. 24h, 720h)")
        return float(DEFAULT_VALIDITY)
    try:
        seconds = parse_duration_ns(text) / 1e9
    except ValueError as exc:
        raise CliError(f"--valid-for {text!r}: {exc}") from None
    if seconds <= 0:
        raise CliError(f"--valid-for {text!r}: must be positive")
    return seconds


def _signing_key(path: Path) -> bytes:
    """A PEM key file, or the base64 of one (``kumactl generate signing-key``'s default)."""
    try:
        data = path.read_bytes().strip()
    except OSError as exc:
        raise CliError(f"--signing-key-path {path}: {exc.strerror or exc}") from None
    if not data.startswith(b"-----"):
        try:
            data = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise CliError(f"--signing-key-path {path}: neither PEM nor base64 PEM") from None
    try:
        load_private_key(data)
    except SigningKeyError as exc:
        raise CliError(f"--signing-key-path {path}: {exc}") from None
    return data


def _offline(signing_key_path: Path | None, kid: str | None) -> tuple[bytes, str] | None:
    if signing_key_path is None and kid is None:
        return None
    if signing_key_path is None or not kid:
        raise CliError("--signing-key-path and --kid go together (offline signing)")
    return _signing_key(signing_key_path), kid


def _post(session: Session, path: str, body: dict[str, object], what: str) -> str:
    try:
        _, answer = session.client.call("POST", path, body=json.dumps(body).encode())
    except ApiCallError as exc:
        raise CliError(f"failed to generate a {what} token: {exc.message}", exc.causes) from None
    return answer.decode()


def dataplane_token(
    session: Session,
    *,
    name: str,
    mesh: str,
    tags: Sequence[str],
    proxy_type: str,
    valid_for: str | None,
    signing_key_path: Path | None,
    kid: str | None,
) -> None:
    try:
        tag_set = parse_tags(tags)
    except ValueError as exc:
        raise CliError(f"--tag: {exc}") from None
    seconds = _valid_for(valid_for, required=False)
    identity = DataplaneIdentity(name=name, mesh=mesh, tags=tag_set, type=proxy_type)
    offline = _offline(signing_key_path, kid)
    if offline is not None:
        token = sign(dataplane_claims(identity), offline[0], offline[1], seconds)
    else:
        body: dict[str, object] = {
            "name": name,
            "mesh": mesh,
            "tags": {k: list(v) for k, v in tag_set.items()},
            "type": proxy_type,
            "validFor": valid_for or "",
        }
        token = _post(session, "/tokens/dataplane", body, "dataplane")
    session.stdout.write(token)


def zone_token(
    session: Session,
    *,
    zone: str,
    scope: Sequence[str],
    valid_for: str | None,
    signing_key_path: Path | None,
    kid: str | None,
) -> None:
    if not zone:
        raise CliError("--zone is required")
    scopes = [s for value in scope for s in value.split(",") if s] or list(ZONE_SCOPES)
    unknown = [s for s in scopes if s not in ZONE_SCOPES]
    if unknown:
        raise CliError(f"--scope {unknown[0]!r}: must be one of {', '.join(ZONE_SCOPES)}")
    seconds = _valid_for(valid_for, required=True)
    offline = _offline(signing_key_path, kid)
    if offline is not None:
        claims = zone_claims(ZoneIdentity(zone=zone, scope=tuple(scopes)))
        token = sign(claims, offline[0], offline[1], seconds)
    else:
        body: dict[str, object] = {"zone": zone, "scope": scopes, "validFor": valid_for}
        token = _post(session, "/tokens/zone", body, "zone")
    session.stdout.write(token)


def signing_key(session: Session, output_format: str) -> None:
    key = new_signing_key()
    session.stdout.write(
        base64.b64encode(key).decode() if output_format == "pem-base64" else key.decode()
    )
