from __future__ import annotations

from pathlib import Path

import pytest

from kuma.cp.config import ConfigError, env_name, load_config, parse_duration


@pytest.mark.parametrize(
    ("path", "env"),
    [
        ("store.type", "KUMA_STORE_TYPE"),
        ("store.etcd.endpoints", "KUMA_STORE_ETCD_ENDPOINTS"),
        ("store.directory.path", "KUMA_STORE_DIRECTORY_PATH"),
        ("dpServer.port", "KUMA_DP_SERVER_PORT"),
        ("apiServer.http.port", "KUMA_API_SERVER_HTTP_PORT"),
        ("bootstrapServer.params.adminPort", "KUMA_BOOTSTRAP_SERVER_PARAMS_ADMIN_PORT"),
        ("defaults.skipMeshCreation", "KUMA_DEFAULTS_SKIP_MESH_CREATION"),
        (
            "xdsServer.dataplaneDeregistrationDelay",
            "KUMA_XDS_SERVER_DATAPLANE_DEREGISTRATION_DELAY",
        ),
    ],
)
def test_env_names_follow_kuma(path: str, env: str) -> None:
    assert env_name(path) == env


def test_defaults_match_kuma() -> None:
    config = load_config(None, {})
    assert config.store.type == "memory"
    assert config.dp_server.port == 5678
    assert config.api_server.http.port == 5681
    assert config.bootstrap_server.params.admin_port == 9901
    assert config.deregistration_delay == 10.0
    assert config.status_flush_interval == 10.0
    assert config.defaults.skip_mesh_creation is False


def test_file_then_env(tmp_path: Path) -> None:
    file = tmp_path / "cp.yml"
    file.write_text(
        "store:\n  type: directory\n  directory:\n    path: /srv/a\n"
        "dpServer:\n  port: 1111\n"
        "xdsServer:\n  dataplaneDeregistrationDelay: 2s\n"
    )
    config = load_config(
        file,
        {
            "KUMA_STORE_DIRECTORY_PATH": "/srv/mesh",
            "KUMA_DP_SERVER_PORT": "5679",
            "KUMA_DEFAULTS_SKIP_MESH_CREATION": "true",
            "UNRELATED": "x",
        },
    )
    assert config.store.type == "directory"
    assert config.store.options_for("directory") == {"path": "/srv/mesh"}
    assert config.dp_server.port == 5679
    assert config.deregistration_delay == 2.0
    assert config.defaults.skip_mesh_creation is True


def test_etcd_from_env() -> None:
    config = load_config(
        None,
        {
            "KUMA_STORE_TYPE": "etcd",
            "KUMA_STORE_ETCD_ENDPOINTS": "http://127.0.0.1:2379,http://127.0.0.1:22379",
            "KUMA_STORE_ETCD_PREFIX": "/mesh",
        },
    )
    assert config.store.options_for("etcd") == {
        "endpoints": ["http://127.0.0.1:2379", "http://127.0.0.1:22379"],
        "prefix": "/mesh",
    }
    single = load_config(
        None, {"KUMA_STORE_TYPE": "etcd", "KUMA_STORE_ETCD_ENDPOINTS": "http://127.0.0.1:2379"}
    )
    assert single.store.options_for("etcd")["endpoints"] == ["http://127.0.0.1:2379"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KUMA_DP_SERVER_PORT": "abc"}, "dpServer.port"),
        ({"KUMA_DP_SERVER_PORT": "70000"}, "dpServer.port"),
        ({"KUMA_API_SERVER_HTTP_PORT": "-1"}, "apiServer.http.port"),
        ({"KUMA_XDS_SERVER_DATAPLANE_DEREGISTRATION_DELAY": "10x"}, "dataplaneDeregistrationDelay"),
        ({"KUMA_DEFAULTS_SKIP_MESH_CREATION": "maybe"}, "defaults.skipMeshCreation"),
        ({"KUMA_LOGGING_LEVEL": "loud"}, "logging.level"),
    ],
)
def test_bad_values_name_the_key(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, env)


def test_unknown_keys_are_named(tmp_path: Path) -> None:
    file = tmp_path / "cp.yml"
    file.write_text("dpServer:\n  prot: 1\n")
    with pytest.raises(ConfigError, match=r"dpServer\.prot: unknown key"):
        load_config(file, {})
    file.write_text("dpServerr:\n  port: 1\n")
    with pytest.raises(ConfigError, match=r"dpServerr: unknown key"):
        load_config(file, {})


def test_bad_yaml_names_the_file(tmp_path: Path) -> None:
    file = tmp_path / "cp.yml"
    file.write_text("store: [\n")
    with pytest.raises(ConfigError, match=r"cp\.yml"):
        load_config(file, {})


@pytest.mark.parametrize(
    ("text", "seconds"), [("10s", 10.0), ("1m30s", 90.0), ("250ms", 0.25), ("0", 0.0), ("1h", 3600)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "s", "10x", "1m 30s", "-1s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_authn_and_tls_keys() -> None:
    config = load_config(None, {})
    assert config.dp_server.authn.dp_proxy.type == "dpToken"  # secure by default
    assert config.dp_server.tls_enabled
    assert config.api_server.https.port == 5682
    off = load_config(
        None,
        {"KUMA_DP_SERVER_AUTHN_DP_PROXY_TYPE": "none", "KUMA_DP_SERVER_TLS_ENABLED": "false"},
    )
    assert (off.dp_server.authn.dp_proxy.type, off.dp_server.tls_enabled) == ("none", False)
    with pytest.raises(ConfigError, match=r"^dpServer.authn.dpProxy.type: must be dpToken or none"):
        load_config(None, {"KUMA_DP_SERVER_AUTHN_DP_PROXY_TYPE": "serviceAccountToken"})
    keys = '[{"kid": "1", "key": "-----BEGIN PUBLIC KEY-----"}]'
    with pytest.raises(ConfigError, match=r"publicKeys\[0\]\.mesh: cannot be empty"):
        load_config(None, {"KUMA_DP_SERVER_AUTHN_DP_PROXY_DP_TOKEN_VALIDATOR_PUBLIC_KEYS": keys})
    both = '[{"kid": "1", "mesh": "default", "key": "k", "keyFile": "f"}]'
    with pytest.raises(ConfigError, match="give exactly one of key and keyFile"):
        load_config(None, {"KUMA_DP_SERVER_AUTHN_DP_PROXY_DP_TOKEN_VALIDATOR_PUBLIC_KEYS": both})
