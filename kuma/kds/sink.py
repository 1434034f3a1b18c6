"""Where a KDS receiver puts what its peer sends: its own store, written directly (not through
the API, whose authoring rules refuse these kinds here). What is stored becomes live through
the store's watch like any other write (the engine on a zone, the API on global).

A sink only touches what came from its peer (``owns``): a zone's own policies, or another
zone's Dataplanes on global, are never replaced or deleted. It declares what it holds from its
own store, so a control plane that restarts also resumes with only the differences.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Protocol

from kuma.resources import Resource, ResourceKey, ValidationError, ZoneIngress
from kuma.resources.model import AvailableService
from kuma.store import ConflictError, NotFoundError, Store, StoreError

from . import codec, parts
from .codec import KdsDecodeError

log = logging.getLogger(__name__)


class NotApplied(Exception):
    """A received resource this control plane refuses to store."""


class Sink(Protocol):
    """Where a receiver puts what its peer sends (:class:`StoreSink`; global's zone sink adds
    the zone's insights, :mod:`.insight_sync`)."""

    async def held(self) -> dict[str, dict[str, str]]: ...

    async def apply(
        self, type_url: str, resources: Iterable[object], removed: Iterable[str]
    ) -> str: ...


#: Why a received resource must not be stored here (None: fine).
Check = Callable[[Resource], str | None]


class StoreSink:
    def __init__(
        self,
        store: Store,
        kinds: tuple[str, ...],
        *,
        owns: Callable[[Resource], bool],
        replaceable: Callable[[Resource], bool] | None = None,
        check: Check | None = None,
    ) -> None:
        """``owns``: came from the peer (may be deleted on its word); ``replaceable``: may be
        overwritten by the peer's copy (default: ``owns``); ``check``: refuses a resource."""
        self._store = store
        self._kinds = kinds
        self._owns = owns
        self._replaceable = replaceable or owns
        self._check = check

    async def held(self) -> dict[str, dict[str, str]]:
        """type URL -> wire name -> version of what this store holds from the peer."""
        held: dict[str, dict[str, str]] = {}
        for kind in self._kinds:
            page = await self._store.list(kind)
            held.setdefault(codec.type_url(kind), {})
            for item in page.items:
                if self._owns(item.resource):
                    for type_url, name, version in parts.held(item.resource):
                        held.setdefault(type_url, {})[name] = version
        return held

    async def apply(
        self, type_url: str, resources: Iterable[object], removed: Iterable[str]
    ) -> str:
        """Store ``resources`` (``Resource`` messages) and delete ``removed``; what could not
        be done, one line per name (empty: all done)."""
        errors: list[str] = []
        if type_url == parts.ENTRY_URL:
            errors = await self._entries(resources, removed)
            resources, removed = (), ()
        for item in resources:
            name: str = item.name  # type: ignore[attr-defined]
            body: bytes = item.resource.value  # type: ignore[attr-defined]
            try:
                await self._put(codec.decode(type_url, name, body))
            except (NotApplied, KdsDecodeError, ValidationError, StoreError) as exc:
                errors.append(f"{name[:200]}: {exc}")
        for name in removed:
            try:
                await self._remove(codec.key_of(type_url, name))
            except (KdsDecodeError, StoreError) as exc:
                errors.append(f"{name[:200]}: {exc}")
        for line in errors:
            log.warning("KDS: not applied: %s", line)
        return "; ".join(errors)

    async def _put(self, resource: Resource) -> None:
        if self._check is not None and (problem := self._check(resource)) is not None:
            raise NotApplied(problem)
        key = ResourceKey.of(resource)
        for _ in range(3):
            try:
                existing = await self._store.get(key)
            except NotFoundError:
                await self._store.create(resource)
                log.info("KDS: created %s", key)
                return
            if not self._replaceable(existing.resource):
                raise NotApplied(f"{key} exists here and is not from the peer")
            if isinstance(resource, ZoneIngress) and isinstance(existing.resource, ZoneIngress):
                # Its list travels as entries (:mod:`.parts`): keep the one stored.
                resource = parts.keep_list(resource, existing.resource)
            if codec.canonical(existing.resource) == codec.canonical(resource):
                return
            try:
                await self._store.update(resource, version=existing.meta.version)
                log.info("KDS: updated %s", key)
                return
            except (ConflictError, NotFoundError):
                continue  # written meanwhile: read it again
        raise NotApplied(f"{key} keeps changing here")

    async def _entries(self, resources: Iterable[object], removed: Iterable[str]) -> list[str]:
        """Merge ZoneIngress entries into their stored ingresses: one write per ingress."""
        errors: list[str] = []
        upserts: dict[str, dict[str, AvailableService]] = {}
        removals: dict[str, list[str]] = {}
        for item in resources:
            name: str = item.name  # type: ignore[attr-defined]
            body: bytes = item.resource.value  # type: ignore[attr-defined]
            try:
                entry = parts.decode_entry(name, body)
            except KdsDecodeError as exc:
                errors.append(f"{name[:200]}: {exc}")
                continue
            upserts.setdefault(parts.ingress_of(name), {})[parts.entry_id(entry)] = entry
        for name in removed:
            try:
                removals.setdefault(parts.ingress_of(name), []).append(name.rpartition("/")[2])
            except KdsDecodeError as exc:
                errors.append(f"{name[:200]}: {exc}")
        for ingress in sorted(upserts.keys() | removals.keys()):
            try:
                await self._merge(ingress, upserts.get(ingress, {}), removals.get(ingress, []))
            except (NotApplied, KdsDecodeError, ValidationError, StoreError) as exc:
                errors.append(f"{ingress[:200]}: {exc}")
        return errors

    async def _merge(
        self, name: str, upserts: dict[str, AvailableService], removed: list[str]
    ) -> None:
        key = parts.ingress_key(name)
        for _ in range(3):
            try:
                existing = await self._store.get(key)
            except NotFoundError:
                if upserts:
                    raise NotApplied(f"{key}: no such ZoneIngress here for its entries") from None
                return  # the ingress went first (removals come last): nothing left to remove
            ingress = existing.resource
            if not isinstance(ingress, ZoneIngress) or not self._replaceable(ingress):
                raise NotApplied(f"{key} exists here and is not from the peer")
            merged = parts.merge(ingress, upserts, removed)
            if merged == ingress:
                return
            if self._check is not None and (problem := self._check(merged)) is not None:
                raise NotApplied(problem)
            try:
                await self._store.update(merged, version=existing.meta.version)
            except (ConflictError, NotFoundError):
                continue  # written meanwhile: read it again
            log.info(
                "KDS: updated %s (%d entries changed, %d removed)", key, len(upserts), len(removed)
            )
            return
        raise NotApplied(f"{key} keeps changing here")

    async def _remove(self, key: ResourceKey) -> None:
        try:
            existing = await self._store.get(key)
            if not self._owns(existing.resource):
                return
            await self._store.delete(key, version=existing.meta.version)
            log.info("KDS: deleted %s", key)
        except NotFoundError:
            return
