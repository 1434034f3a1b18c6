"""``monitoringAssignmentServer``: Kuma's keys, environment names and defaults, and its
checks, each error naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from kuma.cp.config import ConfigError, load_config


def test_defaults_are_kumas() -> None:
    mads = load_config(None, {}).monitoring_assignment_server
    assert mads.port == 5676
    assert mads.interface == "0.0.0.0"
    assert mads.api_versions == ["v1"]
    assert mads.default_fetch_timeout == "30s"
    assert mads.assignment_refresh_interval == "1s"
    assert not mads.tls_enabled


def test_file_and_environment(tmp_path: Path) -> None:
    path = tmp_path / "kuma-cp.yaml"
    path.write_text("monitoringAssignmentServer:\n  port: 15676\n  defaultFetchTimeout: 1m\n")
    env = {
        "KUMA_MONITORING_ASSIGNMENT_SERVER_TLS_ENABLED": "true",
        "KUMA_MONITORING_ASSIGNMENT_SERVER_TLS_CERT_FILE": "/c.pem",
        "KUMA_MONITORING_ASSIGNMENT_SERVER_TLS_KEY_FILE": "/k.pem",
        "KUMA_MONITORING_ASSIGNMENT_SERVER_API_VERSIONS": "v1",
    }
    mads = load_config(path, env).monitoring_assignment_server
    assert (mads.port, mads.default_fetch_timeout) == (15676, "1m")
    assert (mads.tls_enabled, mads.tls_cert_file, mads.tls_key_file) == (True, "/c.pem", "/k.pem")
    assert mads.api_versions == ["v1"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KUMA_MONITORING_ASSIGNMENT_SERVER_PORT": "70000"}, "monitoringAssignmentServer.port"),
        (
            {"KUMA_MONITORING_ASSIGNMENT_SERVER_API_VERSIONS": "v2"},
            "monitoringAssignmentServer.apiVersions: contains invalid version v2",
        ),
        (
            {"KUMA_MONITORING_ASSIGNMENT_SERVER_DEFAULT_FETCH_TIMEOUT": "soon"},
            "monitoringAssignmentServer.defaultFetchTimeout: invalid duration",
        ),
        (
            {"KUMA_MONITORING_ASSIGNMENT_SERVER_ASSIGNMENT_REFRESH_INTERVAL": "0"},
            "monitoringAssignmentServer.assignmentRefreshInterval: must be positive",
        ),
        (
            {"KUMA_MONITORING_ASSIGNMENT_SERVER_TLS_KEY_FILE": "/k.pem"},
            "monitoringAssignmentServer.tlsCertFile and tlsKeyFile: set both or neither",
        ),
    ],
)
def test_bad_values_name_the_key(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, env)


def test_empty_api_versions_in_a_file(tmp_path: Path) -> None:
    path = tmp_path / "kuma-cp.yaml"
    path.write_text("monitoringAssignmentServer:\n  apiVersions: []\n")
    with pytest.raises(ConfigError, match="apiVersions: must contain at least one version"):
        load_config(path, {})
