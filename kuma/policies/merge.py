"""Merging the ``default`` of several policy items into one (Kuma's ``MergeConfs``).

Confs are merged as JSON documents, in order, each one an RFC 7396 merge patch over the
result so far: objects merge key by key, anything else (numbers, strings, lists) is replaced
by the later value. Lists named in ``appends`` (Kuma's ``Append*`` fields) are instead the
concatenation of that list in every conf.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396: ``patch`` applied to ``target`` (neither is modified)."""
    if not isinstance(patch, Mapping):
        return patch
    result: dict[str, Any] = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _get(document: Mapping[str, Any], path: Sequence[str]) -> Any:
    node: Any = document
    for part in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def _set(document: dict[str, Any], path: Sequence[str], value: Any) -> None:
    node = document
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            return
        node[part] = child = dict(child)
        node = child
    node[path[-1]] = value


def merge_confs(
    confs: Sequence[Mapping[str, Any]], appends: frozenset[str] = frozenset()
) -> Mapping[str, Any]:
    result: Any = {}
    for conf in confs:
        result = merge_patch(result, conf)
    for dotted in sorted(appends):
        path = dotted.split(".")
        joined = [v for conf in confs for v in (_get(conf, path) or ())]
        if joined:
            _set(result, path, joined)
    return dict(result)
