"""Errors of the resource room: decoding (shape) and validation (Kuma's rules)."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec


class Violation(msgspec.Struct, frozen=True):
    """One broken rule: a field path in Kuma's notation and Kuma's message."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class ResourceError(ValueError):
    """Base class: something is wrong with a resource a user gave us."""


class DecodeError(ResourceError):
    """A document could not be parsed or does not have the resource's shape.

    ``source`` names where it came from (a file path, "request body", an etcd key), ``document``
    is the 0-based index of the document in a multi-document input, ``line`` the 1-based line
    when known, ``field`` the field path when known.
    """

    def __init__(
        self,
        reason: str,
        *,
        source: str = "",
        document: int | None = None,
        line: int | None = None,
        field: str = "",
    ) -> None:
        self.reason = reason
        self.source = source
        self.document = document
        self.line = line
        self.field = field
        super().__init__(self._render())

    def _render(self) -> str:
        where = self.source
        if self.line is not None:
            where = f"{where}:{self.line}" if where else f"line {self.line}"
        if self.document is not None:
            where = (
                f"{where} (document {self.document + 1})"
                if where
                else (f"document {self.document + 1}")
            )
        what = f"{self.field}: {self.reason}" if self.field else self.reason
        return f"{where}: {what}" if where else what


class ValidationError(ResourceError):
    """A resource breaks Kuma's rules; ``violations`` lists every broken rule at once."""

    def __init__(self, violations: Sequence[Violation], *, subject: str = "") -> None:
        self.violations = tuple(violations)
        self.subject = subject
        lines = "; ".join(str(v) for v in self.violations)
        super().__init__(f"{subject}: {lines}" if subject else lines)
