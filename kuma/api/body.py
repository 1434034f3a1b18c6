"""Reading a PUT body: bounded in size, JSON or YAML by Content-Type, exactly one resource."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import orjson
from aiohttp import web

from kuma.resources import DecodeError, Resource, from_document
from kuma.resources.codec import line_of, load_one

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


class Body(NamedTuple):
    """A PUT body decoded as the URL's resource type, and the ``type`` the body itself gave
    (None when it gave none): Kuma reads the body as the URL's type and reports a different
    ``type`` beside the other URL mismatches, after the spec's own violations."""

    resource: Resource
    written_type: object


def decode_body(body: bytes, content_type: str, type_name: str) -> Body:
    """One resource of type ``type_name`` from a JSON body (``application/json``) or, for any
    other type, a YAML or JSON body told apart by its first character. Raises ApiError (400)
    naming the problem."""
    json_only = _is_json(content_type)
    try:
        text = body.decode("utf-8")
        document = _json_document(body) if json_only else load_one(text, source=SOURCE)
        written = document.get("type") if isinstance(document, Mapping) else None
        if isinstance(document, Mapping):
            document = {**document, "type": type_name}
        try:
            return Body(from_document(document), written)
        except DecodeError as exc:
            line = None if json_only else line_of(text, 0, exc.field)
            raise DecodeError(exc.reason, source=SOURCE, line=line, field=exc.field) from None
    except DecodeError as exc:
        raise bad_body(exc) from None
    except UnicodeDecodeError as exc:
        raise bad_body(DecodeError(f"not UTF-8 text: {exc.reason}", source=SOURCE)) from None


def _json_document(body: bytes) -> object:
    # Strict JSON: a YAML body sent as application/json is an error, not a guess.
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"invalid JSON: {exc.msg}", source=SOURCE, line=exc.lineno) from None
    if isinstance(document, list):
        raise DecodeError(f"expected exactly one resource, found {len(document)}", source=SOURCE)
    return document
