"""Reading a PUT body: bounded in size, JSON or YAML by Content-Type, exactly one resource."""

from __future__ import annotations

import orjson
from aiohttp import web

from kuma.resources import DecodeError, Resource, decode_one, from_document

from .errors import ApiError, bad_body

SOURCE = "request body"


def too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        "Request Entity Too Large",
        f"the request body is larger than {limit} bytes (apiServer.maxRequestBytes)",
    )


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, or 413 as soon as it is known to exceed ``limit``.

    A declared Content-Length over the limit is refused before anything is read; a chunked body
    is cut off by aiohttp's ``client_max_size`` (set to the same limit) while it is read.
    """
    declared = request.content_length
    if declared is not None and declared > limit:
        raise too_large(limit)
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise too_large(limit) from None


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or content_type.endswith("+json")


def decode_body(body: bytes, content_type: str) -> Resource:
    """One resource from a JSON body (``application/json``) or, for any other type, a YAML
    or JSON body told apart by its first character. Raises ApiError (400) naming the problem."""
    try:
        if _is_json(content_type):
            return _decode_json(body)
        return decode_one(body, source=SOURCE)
    except DecodeError as exc:
        raise bad_body(exc) from None
    except UnicodeDecodeError as exc:
        raise bad_body(DecodeError(f"not UTF-8 text: {exc.reason}", source=SOURCE)) from None


def _decode_json(body: bytes) -> Resource:
    # Strict JSON: a YAML body sent as application/json is an error, not a guess.
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"invalid JSON: {exc.msg}", source=SOURCE, line=exc.lineno) from None
    if isinstance(document, list):
        raise DecodeError(f"expected exactly one resource, found {len(document)}", source=SOURCE)
    try:
        return from_document(document)
    except DecodeError as exc:
        raise DecodeError(exc.reason, source=SOURCE, field=exc.field) from None
