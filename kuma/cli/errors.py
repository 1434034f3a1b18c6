"""What kumactl reports: one ``Error: ...`` line, then ``* field: reason`` lines (Kuma's
``app/kumactl/pkg/errors``)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any


class CliError(Exception):
    """A failure to report to the user; ``causes`` are (field, reason) pairs."""

    def __init__(self, message: str, causes: Iterable[tuple[str, str]] = ()) -> None:
        self.message = message
        self.causes = tuple(causes)
        super().__init__(self.render())

    def render(self) -> str:
        lines = [self.message]
        lines.extend(f"* {field}: {reason}" for field, reason in self.causes)
        return "\n".join(lines)


class ApiCallError(CliError):
    """The API answered with an error status."""

    def __init__(self, status: int, message: str, causes: Iterable[tuple[str, str]] = ()) -> None:
        self.status = status
        super().__init__(message, causes)


def from_response(status: int, body: bytes) -> ApiCallError:
    """An API error reply as kumactl prints it: ``Title (detail)`` and one line per invalid
    parameter; a reply that is not Kuma's error JSON is shown as ``(status): body``."""
    document = _json(body)
    if document is None or "title" not in document:
        text = body.decode("utf-8", errors="replace").strip()
        return ApiCallError(status, f"({status}): {text}")
    detail = document.get("detail") or document.get("details") or ""
    message = f"{document['title']} ({detail})"
    causes: list[tuple[str, str]] = []
    if document.get("invalid_parameters"):
        causes = [
            (str(p.get("field")), str(p.get("reason")))
            for p in _dicts(document, "invalid_parameters")
        ]
    elif document.get("causes"):
        causes = [(str(c.get("field")), str(c.get("message"))) for c in _dicts(document, "causes")]
    return ApiCallError(status, message, causes)


def _json(body: bytes) -> Mapping[str, Any] | None:
    try:
        document = json.loads(body)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def _dicts(document: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    values = document.get(key)
    return [v for v in values if isinstance(v, dict)] if isinstance(values, list) else []
