"""The generic shape of Kuma's targetRef policies (MeshTimeout, MeshRetry, ...) and the
registry of policy kinds.

A policy is a mesh-scoped resource ``{type, mesh, name, labels, spec}`` whose spec has a
top-level ``targetRef`` (which proxies it applies to) and ``to`` / ``from`` lists of
``{targetRef, default}`` items (``default`` is the kind's configuration, typed per kind).

Each kind is one module of ``kuma.policies`` that declares its resource class (a subclass of
:class:`Policy` with its own ``Conf``) and registers a :class:`PolicyKind`: the REST path,
kumactl's names, which targetRef kinds it allows where, and the validation of its ``default``.
The registry is filled when ``kuma.resources`` is imported (its ``__init__`` imports
``kuma.policies`` last), so decoding, validation, stores, the API and kumactl see every kind.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import Violation
from .model import (
    KIND_ORDER,
    MESH,
    MESH_GATEWAY,
    MESH_HTTP_ROUTE,
    MESH_SERVICE,
    MESH_SERVICE_SUBSET,
    MESH_SUBSET,
    Policy,
    PolicyItem,
    PolicySpec,
    TargetRef,
)

__all__ = [
    "ALL_TOP_KINDS",
    "KIND_ORDER",
    "POLICY_KINDS",
    "Policy",
    "PolicyItem",
    "PolicyKind",
    "PolicySpec",
    "TargetRef",
    "policy_kind",
    "register",
]

ConfValidator = Callable[[Any, str, str, list[Violation]], None]
"""``(conf, field path of the default, top-level targetRef kind, out)``: the kind's rules for
one ``default`` (``conf`` may be None when the item has no ``default``)."""


@dataclass(frozen=True)
class PolicyKind:
    """What the rest of the system needs to know about one policy kind."""

    #: ``MeshTimeout``: the resource type and its ``type:`` tag.
    name: str
    cls: type[Policy]
    #: The REST collection (``/meshes/{mesh}/meshtimeouts``) and kumactl's list argument.
    plural: str
    #: The type of one item's ``default`` (what merged configurations are converted to).
    conf_type: type[Any]
    #: Allowed kinds of the top-level targetRef, of ``to[].targetRef`` and ``from[].targetRef``;
    #: an empty ``to_kinds`` / ``from_kinds`` means the kind has no such list.
    top_kinds: tuple[str, ...]
    to_kinds: tuple[str, ...] = ()
    from_kinds: tuple[str, ...] = ()
    validate_conf: ConfValidator | None = None
    #: Dotted JSON paths of lists that merging concatenates instead of replacing.
    appends: frozenset[str] = frozenset()
    #: Position in Kuma's plugin order (pkg/plugins/policies/core/ordered): routes first.
    order: int = 100
    #: Rules about the lists themselves (Kuma: "at least one of 'from', 'to' has to be
    #: defined", "needs at least one item"), appended after the top-level targetRef's.
    validate_lists: Callable[[PolicySpec[Any], list[Violation]], None] | None = None
    #: Top-level kinds with which ``to`` may only target Mesh and ``from`` must be absent
    #: (MeshTimeout, MeshRetry: MeshGateway and MeshHTTPRoute).
    restricting_tops: tuple[str, ...] = ()
    #: ``tags`` allowed with a top-level MeshGateway (Kuma's GatewayListenerTagsAllowed).
    gateway_listener_tags: bool = False

    @property
    def singular(self) -> str:
        """kumactl's singular argument (``kumactl get meshtimeout NAME``)."""
        return self.name.lower()


POLICY_KINDS: dict[str, PolicyKind] = {}

#: The top-level kinds most policies accept (Kuma's validateTop).
ALL_TOP_KINDS = (
    MESH,
    MESH_SUBSET,
    MESH_GATEWAY,
    MESH_SERVICE,
    MESH_SERVICE_SUBSET,
    MESH_HTTP_ROUTE,
)


def register(kind: PolicyKind) -> PolicyKind:
    """Make a policy kind known to decoding, validation, stores, the API and kumactl."""
    from .model import RESOURCE_TYPES  # the shared table of every resource type

    if kind.name != kind.cls.TYPE:
        raise ValueError(f"{kind.cls.__name__}.TYPE is {kind.cls.TYPE!r}, not {kind.name!r}")
    POLICY_KINDS[kind.name] = kind
    RESOURCE_TYPES[kind.name] = kind.cls
    return kind


def policy_kind(type_name: str) -> PolicyKind | None:
    return POLICY_KINDS.get(type_name)


def items_of(spec: PolicySpec[Any], direction: str) -> Sequence[PolicyItem[Any]]:
    return spec.to if direction == "to" else spec.from_
