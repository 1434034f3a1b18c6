"""Mesh ``mtls`` validation: the mtls cases of Kuma's mesh_validator_test.go (same YAML, same
paths and messages) and the CA plugins' backend checks."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
import yaml

from kuma.resources.model import Mesh
from kuma.resources.mtls import enabled_backend, mesh_mtls, parse_kuma_duration
from kuma.resources.validation import validate


def violations(text: str, name: str = "default") -> list[tuple[str, str]]:
    doc: dict[str, Any] = yaml.safe_load(text) or {}
    mesh = msgspec.convert({"type": "Mesh", "name": name, **doc}, Mesh)
    return [(v.field, v.message) for v in validate(mesh)]


KUMA_CASES = {
    "multiple ca backends of the same name": (
        """
        mtls:
          enabledBackend: backend-1
          backends:
          - name: backend-1
            type: builtin
          - name: backend-1
            type: builtin
        """,
        [
            ("mtls.backends", "cannot have more than 1 backends"),
            ("mtls.backends[1].name", '"backend-1" name is already used for another backend'),
        ],
    ),
    "enabledBackend of unknown name": (
        """
        mtls:
          enabledBackend: backend-2
          backends:
          - name: backend-1
            type: builtin
        """,
        [("mtls.enabledBackend", "has to be set to one of the backends in the mesh")],
    ),
    "dpCert rotation invalid expiration time": (
        """
        mtls:
          enabledBackend: backend-3
          backends:
          - name: backend-3
            type: builtin
            dpCert:
              rotation:
                expiration: 2e
        """,
        [("mtls.dpcert.rotation.expiration", "has to be a valid format")],
    ),
    "zoneEgress enabled but mtls not defined": (
        """
        routing:
          zoneEgress: true
        """,
        [("mtls", "has to be set when zoneEgress enabled")],
    ),
    "zoneEgress enabled but multiple ca backends of the same name": (
        """
        mtls:
          enabledBackend: backend-1
          backends:
          - name: backend-1
            type: builtin
          - name: backend-1
            type: builtin
        routing:
          zoneEgress: true
        """,
        [
            ("mtls.backends", "cannot have more than 1 backends"),
            ("mtls.backends[1].name", '"backend-1" name is already used for another backend'),
        ],
    ),
    "zoneEgress and mTLS enabled but no enabledBackend provided": (
        """
        mtls:
          backends:
          - name: backend-1
            type: builtin
        routing:
          zoneEgress: true
        """,
        [("mtls", "has to be set when zoneEgress enabled")],
    ),
}


@pytest.mark.parametrize("case", sorted(KUMA_CASES))
def test_kuma_mtls_cases(case: str) -> None:
    text, expected = KUMA_CASES[case]
    assert violations(text) == expected


def test_kuma_valid_mesh() -> None:
    assert (
        violations(
            """
            mtls:
              enabledBackend: builtin-1
              backends:
              - name: builtin-1
                type: builtin
                dpCert:
                  rotation:
                    expiration: 2y
            routing:
              zoneEgress: true
            """
        )
        == []
    )


def test_full_builtin_and_provided_shapes_are_valid() -> None:
    assert (
        violations(
            """
            mtls:
              enabledBackend: ca-1
              backends:
              - name: ca-1
                type: builtin
                mode: PERMISSIVE
                dpCert:
                  rotation: {expiration: 1d}
                  requestTimeout: 10s
                rootChain: {requestTimeout: 5s}
                conf:
                  caCert: {RSAbits: 4096, expiration: 5y, keyType: ECDSA}
            """
        )
        == []
    )
    assert (
        violations(
            """
            mtls:
              enabledBackend: ca-1
              backends:
              - name: ca-1
                type: provided
                conf:
                  cert: {secret: my-cert}
                  key: {inlineString: "-----BEGIN ..."}
            """
        )
        == []
    )


@pytest.mark.parametrize(
    ("backend", "expected"),
    [
        (
            "{name: ca-1, type: vault}",
            [("mtls.backends[0].type", "could not find installed plugin for this type")],
        ),
        (
            "{name: CA_1, type: builtin}",
            [("mtls.backends[0].name", '"CA_1" name must be valid dns name')],
        ),
        (
            "{name: ca-1, type: builtin, conf: {caCert: {RSAbits: 512}}}",
            [("mtls.backends[0].conf.caCert.RSAbits", "has to be between 2048 and 8192")],
        ),
        (
            "{name: ca-1, type: builtin, conf: {caCert: {keyType: DSA}}}",
            [("mtls.backends[0].conf.caCert.keyType", 'has to be "RSA" or "ECDSA"')],
        ),
        (
            "{name: ca-1, type: builtin, conf: {caCert: {expiration: 10 years}}}",
            [("mtls.backends[0].conf.caCert.expiration", "has to be a valid format")],
        ),
        (
            "{name: ca-1, type: provided}",
            [
                ("mtls.backends[0].conf.cert", "has to be defined"),
                ("mtls.backends[0].conf.key", "has to be defined"),
            ],
        ),
        (
            "{name: ca-1, type: provided, conf: {cert: {}, key: {secret: ''}}}",
            [
                (
                    "mtls.backends[0].conf.cert",
                    "data source has to be chosen. Available sources: secret, file, inline",
                ),
                ("mtls.backends[0].conf.key.secret", "cannot be empty"),
            ],
        ),
        (
            "{name: ca-1, type: builtin, mode: LAX}",
            [("mtls.backends[0].mode", "Invalid enum value 'LAX'...")],
        ),
    ],
)
def test_backend_rules(backend: str, expected: list[tuple[str, str]]) -> None:
    name = yaml.safe_load(backend)["name"]
    found = violations(f"mtls: {{enabledBackend: {name}, backends: [{backend}]}}")
    if expected[0][1].endswith("..."):
        # A shape error: the path is exact, msgspec words the message.
        assert [f for f, _ in found] == [f for f, _ in expected]
        assert "'LAX'" in found[0][1]
    else:
        assert found == expected


def test_skip_validation_skips_backend_checks_only() -> None:
    found = violations(
        "mtls: {enabledBackend: x, skipValidation: true, backends: [{name: ca-1, type: provided}]}"
    )
    assert found == [("mtls.enabledBackend", "has to be set to one of the backends in the mesh")]


def test_typed_view() -> None:
    mesh = Mesh(
        name="m",
        mtls={
            "enabledBackend": "ca-1",
            "backends": [
                {"name": "ca-1", "type": "builtin", "dpCert": {"rotation": {"expiration": "1h"}}}
            ],
        },
    )
    backend = enabled_backend(mesh)
    assert backend is not None
    assert backend.mode == "STRICT"
    assert backend.cert_lifetime == 3600
    assert mesh_mtls(mesh) is mesh_mtls(mesh)  # decoded once
    assert enabled_backend(Mesh(name="m")) is None
    assert enabled_backend(Mesh(name="m", mtls={"backends": [{"name": "a"}]})) is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0), ("24h", 86400), ("1y", 365 * 86400), ("500ms", 0.5), ("2w", 14 * 86400)],
)
def test_kuma_durations(text: str, seconds: float) -> None:
    assert parse_kuma_duration(text) == seconds


@pytest.mark.parametrize("text", ["2e", "1h30m", "", "-1h", "1.5h", "10 s"])
def test_kuma_durations_refused(text: str) -> None:
    assert parse_kuma_duration(text) is None
