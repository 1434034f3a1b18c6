"""The incremental index equals a from-scratch build: after any sequence of Mesh and Dataplane
creates, updates and deletes (meshes with and without a prometheus backend, Dataplane
overrides, moves between meshes), the answer holds exactly the assignments Kuma's generator
makes from the final state, and the version changed exactly when that answer did."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from kuma.mads.assignments import assignment_name, monitoring_assignment
from kuma.mads.index import AssignmentIndex
from kuma.resources import Dataplane, Mesh, ResourceMeta, from_document
from kuma.store import Operation, ResourceEvent

_META = ResourceMeta("1", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))
_BACKENDS = [
    None,
    {"enabledBackend": "p", "backends": [{"name": "p", "type": "prometheus"}]},
    {"enabledBackend": "p", "backends": [{"name": "p", "type": "prometheus", "conf": {"port": 9}}]},
]

meshes = st.builds(
    lambda name, metrics, logged: Mesh(
        name=name, metrics=metrics, logging={"backends": []} if logged else None
    ),
    st.sampled_from(["a", "b"]),
    st.sampled_from(_BACKENDS),
    st.booleans(),
)


def _dataplane(name: str, mesh: str, address: str, service: str, port: int | None) -> Dataplane:
    doc: dict[str, Any] = {
        "type": "Dataplane",
        "mesh": mesh,
        "name": name,
        "networking": {
            "address": address,
            "inbound": [{"port": 80, "tags": {"kuma.io/service": service}}],
        },
    }
    if port is not None:
        doc["metrics"] = {"name": "own", "type": "prometheus", "conf": {"port": port}}
    resource = from_document(doc)
    assert isinstance(resource, Dataplane)
    return resource


dataplanes = st.builds(
    _dataplane,
    st.sampled_from(["d1", "d2", "d3"]),
    st.sampled_from(["a", "b"]),
    st.sampled_from(["10.0.0.1", "10.0.0.2"]),
    st.sampled_from(["web", "api"]),
    st.sampled_from([None, 7000]),
)
events = st.lists(st.tuples(st.booleans(), st.one_of(meshes, dataplanes)), max_size=25)


def _from_scratch(state: dict[tuple[str, str, str], Mesh | Dataplane]) -> list[Any]:
    index = {r.name: r for r in state.values() if isinstance(r, Mesh)}
    out = []
    for resource in state.values():
        if isinstance(resource, Dataplane):
            document = monitoring_assignment(index.get(resource.mesh), resource)
            if document is not None:
                out.append((assignment_name(resource), document))
    return [document for _, document in sorted(out, key=lambda pair: pair[0])]


@settings(max_examples=150, deadline=None)
@given(events)
def test_incremental_equals_from_scratch(steps: list[tuple[bool, Mesh | Dataplane]]) -> None:
    index = AssignmentIndex()
    state: dict[tuple[str, str, str], Mesh | Dataplane] = {}
    answer = orjson.loads(index.response()).get("resources", [])
    for delete, resource in steps:
        key = (resource.TYPE, resource.mesh_name, resource.name)
        # A Dataplane keeps its mesh (the mesh is part of its key); delete what is there.
        if delete:
            if key not in state:
                continue
            resource = state.pop(key)
            operation = Operation.DELETE
        else:
            operation = Operation.UPDATE if key in state else Operation.CREATE
            state[key] = resource
        version = index.version
        index.apply(ResourceEvent(operation, resource, _META, 1))
        expected = _from_scratch(state)
        assert orjson.loads(index.response()).get("resources", []) == expected
        assert (index.version != version) == (expected != answer)
        answer = expected
