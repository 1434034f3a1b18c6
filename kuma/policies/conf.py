"""Helpers shared by the policy kinds' validators: Kuma's duration and number rules with its
messages (``pkg/core/validators``)."""

from __future__ import annotations

from kuma.resources.errors import Violation
from kuma.resources.validation.common import DURATION_FORMAT, parse_duration_ns

MUST_BE_DEFINED = "must be defined"
MUST_NOT_BE_EMPTY = "must not be empty"
NOT_NEGATIVE = "must not be negative when defined"
GREATER_THAN_ZERO = "must be greater than zero when defined"


def nanoseconds(text: str | None, default: int | None = None) -> int | None:
    """A validated duration in nanoseconds (``default`` when absent)."""
    if text is None:
        return default
    return parse_duration_ns(text)


def check_duration(
    out: list[Violation], path: str, text: str | None, *, positive: bool = False
) -> None:
    """Kuma's ValidateDurationNotNegativeOrNil / ValidateDurationGreaterThanZeroOrNil."""
    if text is None:
        return
    try:
        value = parse_duration_ns(text)
    except ValueError:
        out.append(Violation(path, DURATION_FORMAT))
        return
    if positive and value <= 0:
        out.append(Violation(path, GREATER_THAN_ZERO))
    elif value < 0:
        out.append(Violation(path, NOT_NEGATIVE))


SECOND = 1_000_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
MILLISECOND = 1_000_000
