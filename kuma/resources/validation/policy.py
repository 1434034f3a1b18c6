"""Kuma's rules for every targetRef policy (``pkg/core/resources/apis/mesh/validators.go``
``ValidateTargetRef`` and the shared part of each policy's validator): the top-level
targetRef, the ``to`` and ``from`` targetRefs, then the kind's own rules for each ``default``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ..errors import Violation
from ..model import (
    MESH,
    MESH_GATEWAY,
    MESH_HTTP_ROUTE,
    MESH_SERVICE,
    MESH_SERVICE_SUBSET,
    MESH_SUBSET,
    Policy,
    TargetRef,
)
from ..policy import POLICY_KINDS
from .common import check_mesh_name, check_name, go_quote

_NAME = re.compile(r"[0-9a-z.\-_]*")
_TAG_NAME = re.compile(r"[a-zA-Z0-9.\-_:/]*")
_TAG_VALUE = re.compile(r"[a-zA-Z0-9.\-_:]*")
_PROXY_TYPES = ("Sidecar", "Gateway")

MUST_BE_DEFINED = "must be defined"
MUST_NOT_BE_DEFINED = "must not be defined"


def _tags(out: list[Violation], path: str, tags: Mapping[str, str]) -> None:
    """Kuma's ValidateTags (no tag required)."""
    for key in sorted(tags):
        if key == "":
            out.append(Violation(path, "tag name must be non-empty"))
        if _TAG_NAME.fullmatch(key) is None:
            out.append(
                Violation(
                    f"{path}[{go_quote(key)}]",
                    "tag name must consist of alphanumeric characters, dots, dashes, slashes "
                    "and underscores",
                )
            )
        value = tags[key]
        if value == "":
            out.append(Violation(f"{path}[{go_quote(key)}]", "tag value must be non-empty"))
        if _TAG_VALUE.fullmatch(value) is None:
            out.append(
                Violation(
                    f"{path}[{go_quote(key)}]",
                    "tag value must consist of alphanumeric characters, dots, dashes and "
                    "underscores",
                )
            )


def check_target_ref(
    out: list[Violation],
    path: str,
    ref: TargetRef,
    supported: tuple[str, ...],
    *,
    gateway_listener_tags: bool = False,
) -> None:
    """Kuma's ValidateTargetRef: ``path`` is the targetRef's own path (``spec.targetRef``)."""

    def at(field: str) -> str:
        return f"{path}.{field}"

    def not_set(field: str, value: object) -> None:
        if value:
            out.append(Violation(at(field), f"must not be set with kind {ref.kind}"))

    def required(field: str, value: object) -> None:
        if not value:
            out.append(Violation(at(field), f"must be set with kind {ref.kind}"))

    def name() -> None:
        if _NAME.fullmatch(ref.name) is None:
            out.append(
                Violation(
                    at("name"),
                    "invalid characters: must consist of lower case alphanumeric characters, "
                    "'-', '.' and '_'.",
                )
            )

    if not ref.kind:
        out.append(Violation(at("kind"), MUST_BE_DEFINED))
        return
    if ref.kind not in supported:
        out.append(Violation(at("kind"), "value is not supported"))
        return
    for index, proxy_type in enumerate(ref.proxy_types):
        # Kuma enforces this in the CRD schema (enum Sidecar;Gateway).
        if proxy_type not in _PROXY_TYPES:
            out.append(Violation(f"{at('proxyTypes')}[{index}]", "must be one of Sidecar, Gateway"))
    if ref.kind == MESH:
        if ref.name:
            out.append(
                Violation(at("name"), f"using name with kind {ref.kind} is not yet supported")
            )
        not_set("mesh", ref.mesh)
        not_set("tags", ref.tags)
    elif ref.kind == MESH_SUBSET:
        not_set("name", ref.name)
        not_set("mesh", ref.mesh)
        _tags(out, at("tags"), ref.tags)
    elif ref.kind in (MESH_SERVICE, MESH_HTTP_ROUTE):
        required("name", ref.name)
        name()
        not_set("mesh", ref.mesh)
        not_set("tags", ref.tags)
        not_set("proxyTypes", ref.proxy_types)
    elif ref.kind in (MESH_SERVICE_SUBSET, MESH_GATEWAY):
        required("name", ref.name)
        name()
        not_set("mesh", ref.mesh)
        not_set("proxyTypes", ref.proxy_types)
        _tags(out, at("tags"), ref.tags)
        if ref.kind == MESH_GATEWAY and ref.tags and not gateway_listener_tags:
            not_set("tags", ref.tags)


def validate_policy(policy: Policy, out: list[Violation]) -> None:
    check_name(out, "name", policy.name)
    check_mesh_name(out, policy.mesh)
    kind = POLICY_KINDS.get(policy.TYPE)
    if kind is None:  # a Policy subclass that was never registered: a programming error
        out.append(Violation("type", f"{policy.TYPE} is not a registered policy kind"))
        return
    spec = policy.spec
    top = spec.target_ref.kind
    check_target_ref(
        out,
        "spec.targetRef",
        spec.target_ref,
        kind.top_kinds,
        gateway_listener_tags=kind.gateway_listener_tags,
    )
    if kind.validate_lists is not None:
        kind.validate_lists(spec, out)
    restricted = top in kind.restricting_tops
    if spec.from_:
        if not kind.from_kinds or restricted:
            out.append(Violation("spec.from", MUST_NOT_BE_DEFINED))
        else:
            for index, item in enumerate(spec.from_):
                path = f"spec.from[{index}]"
                check_target_ref(out, f"{path}.targetRef", item.target_ref, kind.from_kinds)
                if kind.validate_conf is not None:
                    kind.validate_conf(item.default, f"{path}.default", top, out)
    if spec.to and not kind.to_kinds:
        out.append(Violation("spec.to", MUST_NOT_BE_DEFINED))
        return
    to_kinds = (MESH,) if restricted else kind.to_kinds
    for index, item in enumerate(spec.to):
        path = f"spec.to[{index}]"
        check_target_ref(out, f"{path}.targetRef", item.target_ref, to_kinds)
        if kind.validate_conf is not None:
            kind.validate_conf(item.default, f"{path}.default", top, out)
