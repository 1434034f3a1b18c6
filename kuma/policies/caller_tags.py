"""The callers' tags: Kuma's ``x-kuma-tags`` request header, and which meshes need it.

Kuma adds the caller's tags (every tag of every inbound of its Dataplane, and of its
gateway) as the ``x-kuma-tags`` request header on every HTTP outbound route configuration
(``envoy_routes.TagsHeader``); inbound routes remove it. Policies whose ``from`` rules name
particular clients match that header on the callee's inbound (MeshFaultInjection).

The header makes each proxy's outbound listeners its own, where they are otherwise shared by
every proxy of the mesh (``kuma.xds.engine.shared``). So it is added only in a mesh where some
policy consumes it: :func:`needs_caller_tags` is that decision, and a kind says which of its
policies consume the header with :func:`register_caller_tags_need`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from kuma.resources.model import Dataplane, Policy

#: Whether one policy of a kind consumes the callers' tags.
CallerTagsNeed = Callable[[Policy], bool]

_NEEDS: dict[str, CallerTagsNeed] = {}


def register_caller_tags_need(kind: str, need: CallerTagsNeed) -> None:
    """Declare that the policies of ``kind`` for which ``need`` is true consume the header."""
    _NEEDS[kind] = need


def may_need_caller_tags(kind: str) -> bool:
    """Whether a policy of ``kind`` can change a mesh's need (the engine's policy handler
    checks the need again only then)."""
    return kind in _NEEDS


def needs_caller_tags(policies_by_kind: Mapping[str, Sequence[Policy]]) -> bool:
    """Whether a mesh with these policies (kind → policies) sends the callers' tags."""
    for kind, need in _NEEDS.items():
        if any(need(policy) for policy in policies_by_kind.get(kind, ())):
            return True
    return False


def serialize_tags(tags: Mapping[str, Iterable[str]]) -> str:
    """Kuma's ``tags.Serialize``: ``&key=v1,v2&`` per key, keys and values sorted, values
    deduplicated; ``""`` for no tags."""
    return "".join(f"&{key}={','.join(sorted(set(tags[key])))}&" for key in sorted(tags))


def tag_set(dataplane: Dataplane) -> dict[str, set[str]]:
    """Kuma's ``Dataplane.TagSet``: every value of every tag of the inbounds and the gateway."""
    result: dict[str, set[str]] = {}
    networking = dataplane.networking
    if networking is None:
        return result
    sources = [inbound.tags for inbound in networking.inbound]
    if networking.gateway is not None:
        sources.append(networking.gateway.tags)
    for tags in sources:
        for key, value in tags.items():
            result.setdefault(key, set()).add(value)
    return result


#: Kuma's ``tags.TagsHeaderName``.
TAGS_HEADER = "x-kuma-tags"


def caller_tags_header(dataplane: Dataplane) -> str:
    """The ``x-kuma-tags`` value the proxy's outbound routes send (``""``: none, as Kuma adds
    no header for a proxy without tags)."""
    return serialize_tags(tag_set(dataplane))
