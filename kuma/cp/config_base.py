"""What every configuration section shares: Kuma's camelCase keys, unknown keys refused, and
the one error a bad value earns."""

from __future__ import annotations

import msgspec


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the key."""


class Section(msgspec.Struct, forbid_unknown_fields=True, rename="camel", kw_only=True):
    pass
