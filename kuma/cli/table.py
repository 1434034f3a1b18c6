"""kumactl's tables and time cells (``app/kumactl/pkg/output/table``).

Kuma prints tables through Go's ``text/tabwriter`` (min width 1, padding 3, spaces): every
column but the last is padded to its widest cell plus three spaces; the last is not padded.
A pagination footer follows after an empty line.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

PADDING = 3
_GO_MAX_DURATION = timedelta(microseconds=(2**63 - 1) // 1000)


def render(headers: Sequence[str], rows: Sequence[Sequence[str]], footer: str = "") -> str:
    lines = [list(headers), *(list(row) for row in rows)]
    columns = max(len(line) for line in lines)
    widths = [
        max((len(line[i]) for line in lines if i < len(line)), default=0) + PADDING
        for i in range(columns - 1)
    ]
    out = []
    for line in lines:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(line[:-1])]
        out.append("".join(cells) + line[-1])
    text = "\n".join(out) + "\n"
    if footer:
        text += f"\n{footer}\n"
    return text


def duration(delta: timedelta) -> str:
    """Kuma's table.Duration: ``12s``, ``5m``, ``3h``, ``40d``, ``2y``; ``never`` for more
    than a second in the future (clock skew up to a second shows as ``0s``)."""
    # Go's Time.Sub saturates at its longest Duration (about 292 years): Kuma prints 292y.
    delta = max(min(delta, _GO_MAX_DURATION), -_GO_MAX_DURATION)
    seconds = _truncate(delta.total_seconds())
    if seconds < -1:
        return "never"
    if seconds < 0:
        return "0s"
    if seconds < 60:
        return f"{seconds}s"
    minutes = _truncate(delta.total_seconds() / 60)
    if minutes < 60:
        return f"{minutes}m"
    hours = _truncate(delta.total_seconds() / 3600)
    if hours < 24:
        return f"{hours}h"
    if hours < 24 * 365:
        return f"{hours // 24}d"
    return f"{_truncate(delta.total_seconds() / 3600 / 24 / 365)}y"


def _truncate(value: float) -> int:
    # Go's int(float) truncates toward zero, as Python's int() does.
    return int(value)


def ago(moment: datetime | None, now: datetime) -> str:
    """``never`` for no time, else how long before ``now``."""
    return "never" if moment is None else duration(now - moment)


def date(moment: datetime | None, now: datetime) -> str:
    """``2006-01-02 15:04:05`` in ``now``'s time zone, ``-`` for no time."""
    if moment is None:
        return "-"
    return moment.astimezone(now.tzinfo).strftime("%Y-%m-%d %H:%M:%S")


def parse_time(value: object) -> datetime | None:
    """An RFC 3339 time from the API (protobuf JSON may carry nanoseconds), or None."""
    if not isinstance(value, str) or not value:
        return None
    text = value.replace("Z", "+00:00")
    # datetime understands at most microseconds: cut longer fractions.
    if "." in text:
        head, _, tail = text.partition(".")
        digits = len(tail) - len(tail.lstrip("0123456789"))
        text = f"{head}.{tail[: min(digits, 6)]}{tail[digits:]}"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
