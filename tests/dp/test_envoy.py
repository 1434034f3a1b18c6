"""Finding and running Envoy."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from kuma.dp.envoy import EnvoyError, envoy_args, find_envoy, parse_version


def test_parse_version() -> None:
    output = "\nenvoy  version: 6c7e7a5/1.40.0/Clean/RELEASE/BoringSSL\n\n"
    version = parse_version(output)
    assert version.version == "1.40.0"
    assert version.build == "6c7e7a5/1.40.0/Clean/RELEASE/BoringSSL"
    with pytest.raises(EnvoyError, match="cannot read Envoy's version"):
        parse_version("something else")


def test_the_venvs_envoy_is_the_default() -> None:
    # xds-protos owns the top-level ``envoy`` package; the binary is the script beside python.
    assert find_envoy(None) == str(Path(sys.executable).parent / "envoy")


def test_binary_path(tmp_path: Path) -> None:
    assert find_envoy(str(Path(sys.executable).parent / "envoy")).endswith("/envoy")
    with pytest.raises(EnvoyError, match=r"--binary-path .*: not an executable file"):
        find_envoy(str(tmp_path / "missing"))


def test_envoy_args() -> None:
    args = envoy_args(
        "envoy", Path("/c/bootstrap.yaml"), drain_time=30.0, log_level="debug", concurrency=2
    )
    assert args == [
        "envoy",
        "--config-path", "/c/bootstrap.yaml",
        "--drain-time-s", "30",
        "--drain-strategy", "immediate",
        "--disable-hot-restart",
        "--log-level", "debug",
        "--concurrency", "2",
    ]  # fmt: skip
    default = envoy_args("envoy", Path("b"), drain_time=0.5, log_level="info", concurrency=None)
    assert "--concurrency" not in default
    assert default[default.index("--drain-time-s") + 1] == "0"
