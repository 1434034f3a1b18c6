"""Errors of the REST API in Kuma's JSON shape (``pkg/core/rest/errors``).

Every error reply is::

    {"type": "/std-errors", "status": 400, "title": "Could not create a resource",
     "detail": "Resource is not valid",
     "invalid_parameters": [{"field": "networking.address", "reason": "..."}],
     "details": "Resource is not valid",
     "causes": [{"field": "networking.address", "message": "..."}]}

``details`` and ``causes`` are Kuma's deprecated mirrors of ``detail`` and
``invalid_parameters``; Kuma still sends them and older clients still read them, so we do too.
Key order and the omission of empty lists follow Kuma's Go struct.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from aiohttp import web

from kuma.resources import DecodeError, Violation

NOT_FOUND = "Not found"
NOT_VALID = "Resource is not valid"


class ApiError(Exception):
    """An error reply; raised anywhere below a handler, rendered by the error middleware."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        invalid_parameters: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(f"{status} {title} ({detail})")
        self.status = status
        self.title = title
        self.detail = detail
        self.invalid_parameters = tuple(invalid_parameters)

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "type": "/std-errors",
            "status": self.status,
            "title": self.title,
            "detail": self.detail,
        }
        if self.invalid_parameters:
            doc["invalid_parameters"] = [
                {"field": field, "reason": reason} for field, reason in self.invalid_parameters
            ]
        doc["details"] = self.detail
        if self.invalid_parameters:
            doc["causes"] = [
                {"field": field, "message": reason} for field, reason in self.invalid_parameters
            ]
        return doc

    def response(self) -> web.Response:
        return web.Response(
            status=self.status,
            body=orjson.dumps(self.document()),
            content_type="application/json",
        )


def not_found(title: str) -> ApiError:
    return ApiError(404, title, NOT_FOUND)


def invalid(title: str, violations: Iterable[Violation | tuple[str, str]]) -> ApiError:
    """Kuma's validation error: 400, ``Resource is not valid``, one parameter per violation."""
    pairs = [(v.field, v.message) if isinstance(v, Violation) else v for v in violations]
    return ApiError(400, title, NOT_VALID, pairs)


def mesh_not_found(title: str, mesh: str) -> ApiError:
    return ApiError(
        400, title, "Mesh is not found", [("mesh", f"mesh of name {mesh} is not found")]
    )


def bad_body(exc: DecodeError) -> ApiError:
    """A body that does not parse or does not have a resource's shape. ``detail`` carries the
    whole story (line, field, reason); as in Kuma, such an error has no invalid parameters
    (those are for a resource that was read and broke a rule)."""
    return ApiError(400, "Bad Request", str(exc))


def conflict(detail: str) -> ApiError:
    return ApiError(409, "Conflict", detail)


def invalid_page_size(reason: str) -> ApiError:
    return ApiError(400, "Could not retrieve resources", "Invalid page size", [("size", reason)])


def invalid_offset() -> ApiError:
    return ApiError(
        400, "Could not retrieve resources", "Invalid offset", [("offset", "Invalid format")]
    )
