"""The base of every spec fragment of the model (:mod:`.model`, :mod:`.zone_insight`)."""

from __future__ import annotations

import msgspec


class Spec(
    msgspec.Struct,
    frozen=True,
    forbid_unknown_fields=True,
    omit_defaults=True,
    rename="camel",
    kw_only=True,
):
    """Base of every spec fragment: camelCase keys, unknown keys rejected."""
