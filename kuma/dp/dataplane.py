"""The Dataplane kuma-dp runs with: read (file, ``-`` for stdin, or inline), its ``{{ var }}``
placeholders filled in, decoded and checked, all before the control plane is contacted.

Kuma renders the template with mustache, where a missing variable silently becomes empty (and
the Dataplane then fails validation somewhere far from the cause). Here a placeholder without
a value is an error that names it (``kuma.resources.template``, shared with kumactl).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from kuma.bootstrap import decode_proxy_dataplane
from kuma.bootstrap.zone_proxy import ZONE_PROXY_KINDS, decode_zone_proxy
from kuma.resources import Dataplane, ValidationError, ZoneEgress, ZoneIngress, template


class DataplaneError(ValueError):
    """The Dataplane cannot be used; the message says why (file, variable, field paths)."""


def parse_vars(pairs: list[str]) -> dict[str, str]:
    """``-v k=v`` flags into a mapping; a pair without ``=`` or with an empty key is an error."""
    try:
        return template.parse_assignments(pairs)
    except template.TemplateError:
        bad = next(p for p in pairs if not p.partition("=")[1] or not p.partition("=")[0])
        raise DataplaneError(f"--dataplane-var {bad!r}: expected KEY=VALUE") from None


def render(text: str, values: Mapping[str, str]) -> str:
    """Replace every ``{{ name }}``; raise naming every placeholder that has no value."""
    try:
        return template.render(text, values)
    except template.MissingVariablesError as exc:
        names = ", ".join(repr(name) for name in exc.names)
        raise DataplaneError(
            f"the Dataplane template uses {names} but no value was given "
            f"(pass -v/--dataplane-var {exc.names[0]}=VALUE)"
        ) from None


def read_template(path: str | None, inline: str | None) -> str | None:
    """The template text: from ``path`` (``-`` is stdin) or ``inline``; None when neither."""
    if path is not None and inline is not None:
        raise DataplaneError("--dataplane and --dataplane-file cannot be used together")
    if inline is not None:
        return inline
    if path is None:
        return None
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise DataplaneError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise DataplaneError(f"{path} is not UTF-8 text: {exc.reason}") from None


def load_dataplane(
    template: str, values: Mapping[str, str], *, source: str, proxy_type: str = "dataplane"
) -> Dataplane | ZoneIngress | ZoneEgress:
    """Render, decode and check a Dataplane template (a ZoneIngress for ``--proxy-type
    ingress``, a ZoneEgress for ``egress``) with the bootstrap server's own rules."""
    text = render(template, values)
    zone_kind = ZONE_PROXY_KINDS.get(proxy_type)
    try:
        if zone_kind is not None:
            return decode_zone_proxy(text, proxy_type, field="dataplane")
        return decode_proxy_dataplane(text, field="dataplane")
    except ValidationError as exc:
        lines = "\n".join(
            f"  {v.field}: {v.message}" if v.field else f"  {v}" for v in exc.violations
        )
        kind = zone_kind.TYPE if zone_kind is not None else "Dataplane"
        raise DataplaneError(f"{source} is not a valid {kind}:\n{lines}") from None
