"""List requests: Kuma's paging (``size``, opaque ``offset``, ``next`` as a full URL) and its
filters (``name`` substring, ``tag=k:v`` fuzzy, ``gateway=true|false|builtin|delegated``).

Filtering happens here, above the store, because the Store protocol only pages. A filtered
page is collected by asking the store for as many items as are still missing, so that each
store page is consumed whole and its ``next_offset`` is exactly where the next request resumes;
offsets stay the store's own opaque ones. ``total`` of a filtered list counts every match (one
extra pass over the type), as Kuma's does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from aiohttp import web
from multidict import MultiMapping

from kuma.resources import Dataplane, StoredResource
from kuma.store import Store

from .errors import invalid, invalid_offset, invalid_page_size

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
LIST_TITLE = "Could not retrieve resources"
# Kuma's MatchAllTag: a selector value that matches any value of the tag.
MATCH_ALL = "*"

Predicate = Callable[[StoredResource], bool]


@dataclass(frozen=True)
class ListQuery:
    size: int
    offset: str | None
    predicate: Predicate | None


@dataclass(frozen=True)
class ListResult:
    items: tuple[StoredResource, ...]
    total: int
    next_offset: str | None


def page_size(query: MultiMapping[str]) -> int:
    raw = query.get("size")
    if raw is None or raw == "":
        return DEFAULT_PAGE_SIZE
    try:
        size = int(raw)
    except ValueError:
        raise invalid_page_size("invalid format") from None
    if size > MAX_PAGE_SIZE:
        raise invalid_page_size(
            f"invalid page size of {size}. Maximum page size is {MAX_PAGE_SIZE}"
        )
    if size < 1:
        raise invalid_page_size(f"invalid page size of {size}. Minimum page size is 1")
    return size


def parse_tags(values: list[str]) -> dict[str, str]:
    """``tag=k:v`` query values; the value may hold ``:``; malformed ones are ignored (Kuma)."""
    tags: dict[str, str] = {}
    for value in values:
        key, sep, tag_value = value.partition(":")
        if sep:
            tags[key] = tag_value
    return tags


def _fuzzy(selector: Mapping[str, str], tags: Mapping[str, str]) -> bool:
    """Kuma's MatchesFuzzy: every selected tag exists and its value contains the wanted one."""
    for key, wanted in selector.items():
        value = tags.get(key)
        if value is None or (wanted not in value and wanted != MATCH_ALL):
            return False
    return True


def _tags_match(dataplane: Dataplane, selector: Mapping[str, str]) -> bool:
    networking = dataplane.networking
    if networking is None:
        return not selector
    if any(_fuzzy(selector, inbound.tags) for inbound in networking.inbound):
        return True
    gateway_tags = networking.gateway.tags if networking.gateway is not None else {}
    return _fuzzy(selector, gateway_tags)


_GATEWAY_MODES = ("true", "false", "builtin", "delegated")


def _gateway_match(dataplane: Dataplane, mode: str) -> bool:
    gateway = dataplane.networking.gateway if dataplane.networking is not None else None
    if mode == "true":
        return gateway is not None
    if mode == "false":
        return gateway is None
    return gateway is not None and gateway.type.lower() == mode


def list_query(request: web.Request, *, dataplanes: bool) -> ListQuery:
    """Paging and filters of a list request; ApiError (400) when one is malformed."""
    query = request.query
    size = page_size(query)
    offset = query.get("offset") or None
    name_part = query.get("name", "")
    tags: dict[str, str] = {}
    gateway = ""
    if dataplanes:
        tags = parse_tags(query.getall("tag", []))
        gateway = query.get("gateway", "").lower()
        if gateway and gateway not in _GATEWAY_MODES:
            raise invalid(
                LIST_TITLE,
                [
                    (
                        "gateway",
                        "should use `true`, `false`, 'builtin' or 'delegated' instead of "
                        + gateway,
                    )
                ],
            )
    if not (name_part or tags or gateway):
        return ListQuery(size, offset, None)

    def predicate(stored: StoredResource) -> bool:
        resource = stored.resource
        if name_part not in resource.name:
            return False
        if isinstance(resource, Dataplane):
            if gateway and not _gateway_match(resource, gateway):
                return False
            if tags and not _tags_match(resource, tags):
                return False
        return True

    return ListQuery(size, offset, predicate)


async def collect(store: Store, type: str, mesh: str | None, query: ListQuery) -> ListResult:
    """One page of ``type`` (in ``mesh``, or all meshes when None) that satisfies ``query``."""
    try:
        if query.predicate is None:
            page = await store.list(type, mesh, limit=query.size, offset=query.offset)
            return ListResult(page.items, page.total, page.next_offset)
        matches: list[StoredResource] = []
        cursor = query.offset
        while True:
            page = await store.list(type, mesh, limit=query.size - len(matches), offset=cursor)
            matches.extend(item for item in page.items if query.predicate(item))
            cursor = page.next_offset
            if cursor is None or len(matches) == query.size:
                break
    except ValueError:
        # Stores raise ValueError for an offset that is not one of theirs.
        raise invalid_offset() from None
    everything = await store.list(type, mesh)
    total = sum(1 for item in everything.items if query.predicate(item))
    return ListResult(tuple(matches), total, cursor)


def next_url(request: web.Request, next_offset: str | None) -> str | None:
    """The request's own URL with ``offset`` set to the next page's (Kuma's ``next``)."""
    if next_offset is None:
        return None
    # update_query replaces ``offset`` and keeps every other parameter, repeated tags included.
    return str(request.url.update_query(offset=next_offset))
