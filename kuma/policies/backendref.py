"""What MeshHTTPRoute and MeshTCPRoute share: Kuma's ``BackendRef``
(api/common/v1alpha1/ref.go: a MeshService or MeshServiceSubset targetRef with a weight) and
the spec shape (a top-level targetRef and ``to`` items holding ``rules``, no ``from``)."""

from __future__ import annotations

from typing import Generic, TypeVar

import msgspec

from kuma.resources.errors import Violation
from kuma.resources.model import MESH_SERVICE, MESH_SERVICE_SUBSET, PolicyConf, TargetRef
from kuma.resources.validation.policy import check_target_ref


class BackendRef(TargetRef, frozen=True):
    weight: int | None = None
    port: int | None = None


BACKEND_KINDS = (MESH_SERVICE, MESH_SERVICE_SUBSET)


def check_backend_refs(out: list[Violation], path: str, refs: tuple[BackendRef, ...]) -> None:
    for index, ref in enumerate(refs):
        check_target_ref(out, f"{path}[{index}]", ref, BACKEND_KINDS)


def weight_of(ref: BackendRef) -> int:
    """Kuma's ``pointer.DerefOr(ref.Weight, 1)``."""
    return 1 if ref.weight is None else ref.weight


ToT = TypeVar("ToT")


class RouteSpec(PolicyConf, Generic[ToT], frozen=True):
    target_ref: TargetRef = msgspec.field(default_factory=TargetRef)
    to: tuple[ToT, ...] = ()

    @property
    def from_(self) -> tuple[()]:
        """Routes have no ``from`` list."""
        return ()
