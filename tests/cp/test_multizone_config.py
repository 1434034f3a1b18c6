"""``mode`` and ``multizone.*``: Kuma's keys, defaults and checks (kuma/cp/multizone_config.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kuma.cp.config import ConfigError, env_name, load_config


def test_defaults_are_kumas_and_the_mode_is_standalone() -> None:
    config = load_config(None, {})
    assert config.mode == "standalone"
    assert config.zone_name == ""  # a standalone control plane stamps no zone
    assert not config.is_federated_zone
    assert not config.is_global
    kds = config.multizone.global_.kds
    assert (kds.grpc_port, kds.refresh_interval, kds.zone_insight_flush_interval) == (
        5685,
        "1s",
        "10s",
    )
    assert kds.tls_enabled is True
    assert kds.tls_min_version == "TLSv1_2"
    assert kds.max_msg_size == 10 * 1024 * 1024
    assert (kds.msg_send_timeout, kds.nack_backoff, kds.response_backoff) == ("60s", "5s", "0s")
    assert kds.disable_sotw is False
    zone = config.multizone.zone
    assert (zone.name, zone.global_address) == ("default", "")
    assert zone.kds.refresh_interval == "1s"
    assert zone.kds.tls_skip_verify is False
    assert zone.ingress_update_interval == "1s"


@pytest.mark.parametrize(
    ("path", "env"),
    [
        ("mode", "KUMA_MODE"),
        ("multizone.zone.name", "KUMA_MULTIZONE_ZONE_NAME"),
        ("multizone.zone.globalAddress", "KUMA_MULTIZONE_ZONE_GLOBAL_ADDRESS"),
        ("multizone.zone.kds.rootCaFile", "KUMA_MULTIZONE_ZONE_KDS_ROOT_CA_FILE"),
        ("multizone.zone.kds.tlsSkipVerify", "KUMA_MULTIZONE_ZONE_KDS_TLS_SKIP_VERIFY"),
        ("multizone.global.kds.grpcPort", "KUMA_MULTIZONE_GLOBAL_KDS_GRPC_PORT"),
        ("multizone.global.kds.disableSOTW", "KUMA_MULTIZONE_GLOBAL_KDS_DISABLE_SOTW"),
        (
            "multizone.global.kds.zoneHealthCheck.pollInterval",
            "KUMA_MULTIZONE_GLOBAL_KDS_ZONE_HEALTH_CHECK_POLL_INTERVAL",
        ),
    ],
)
def test_env_names_are_kumas(path: str, env: str) -> None:
    assert env_name(path) == env


def test_a_federated_zone_from_the_environment() -> None:
    config = load_config(
        None,
        {
            "KUMA_MODE": "zone",
            "KUMA_MULTIZONE_ZONE_NAME": "zone-1",
            "KUMA_MULTIZONE_ZONE_GLOBAL_ADDRESS": "grpcs://global.example:5685",
            "KUMA_MULTIZONE_ZONE_KDS_TLS_SKIP_VERIFY": "true",
        },
    )
    assert config.mode == "zone"
    assert config.zone_name == "zone-1"
    assert config.is_federated_zone
    assert config.multizone.zone.kds.tls_skip_verify is True


def test_a_zone_without_a_global_is_not_federated_but_stamps_its_zone() -> None:
    config = load_config(None, {"KUMA_MODE": "zone"})
    assert config.zone_name == "default"
    assert not config.is_federated_zone


def test_a_global_from_a_file_and_the_environment(tmp_path: Path) -> None:
    file = tmp_path / "cp.yml"
    file.write_text(
        "mode: global\nmultizone:\n  global:\n    kds:\n      grpcPort: 15685\n"
        "      disableSOTW: true\n"
    )
    config = load_config(
        file,
        {
            "KUMA_MULTIZONE_GLOBAL_KDS_REFRESH_INTERVAL": "500ms",
            # one value is a list of one
            "KUMA_MULTIZONE_GLOBAL_KDS_TLS_CIPHER_SUITES": "TLS_AES_128_GCM_SHA256",
        },
    )
    assert config.is_global
    assert config.zone_name == ""
    kds = config.multizone.global_.kds
    assert kds.grpc_port == 15685
    assert kds.disable_sotw is True
    assert kds.refresh_interval == "500ms"
    assert kds.tls_cipher_suites == ["TLS_AES_128_GCM_SHA256"]


def _error(environ: dict[str, str], tmp_path: Path | None = None, text: str = "") -> str:
    file = None
    if tmp_path is not None:
        file = tmp_path / "cp.yml"
        file.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(file, environ)
    return str(caught.value)


ZONE = {"KUMA_MODE": "zone", "KUMA_MULTIZONE_ZONE_NAME": "zone-1"}
GLOBAL = {"KUMA_MODE": "global"}


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"KUMA_MODE": "remote"}, "mode: invalid mode 'remote'"),
        ({**ZONE, "KUMA_MULTIZONE_ZONE_NAME": ""}, "multizone.zone.name: is mandatory"),
        ({**ZONE, "KUMA_MULTIZONE_ZONE_NAME": "Zone_1"}, "multizone.zone.name: 'Zone_1' has"),
        ({**ZONE, "KUMA_MULTIZONE_ZONE_NAME": "z" * 64}, "multizone.zone.name: cannot be longer"),
        (
            {**ZONE, "KUMA_MULTIZONE_ZONE_GLOBAL_ADDRESS": "https://global:5685"},
            "multizone.zone.globalAddress: unsupported scheme 'https'",
        ),
        (
            {**ZONE, "KUMA_MULTIZONE_ZONE_GLOBAL_ADDRESS": "grpcs://global"},
            "multizone.zone.globalAddress: must name a host and a port",
        ),
        (
            {**ZONE, "KUMA_MULTIZONE_ZONE_GLOBAL_ADDRESS": "grpcs://global:99999"},
            "multizone.zone.globalAddress: cannot parse",
        ),
        (
            {
                **ZONE,
                "KUMA_MULTIZONE_ZONE_GLOBAL_ADDRESS": "grpcs://global:5685",
                "KUMA_MULTIZONE_ZONE_KDS_ROOT_CA_FILE": "/nonexistent/ca.pem",
            },
            "multizone.zone.kds.rootCaFile: cannot read /nonexistent/ca.pem",
        ),
        (
            {
                **ZONE,
                "KUMA_MULTIZONE_ZONE_GLOBAL_ADDRESS": "grpc://global:5685",
                "KUMA_MULTIZONE_ZONE_KDS_REFRESH_INTERVAL": "0s",
            },
            "multizone.zone.kds.refreshInterval: must be positive",
        ),
        (
            {**GLOBAL, "KUMA_MULTIZONE_GLOBAL_KDS_GRPC_PORT": "70000"},
            "multizone.global.kds.grpcPort: must be in the range [0, 65535], got 70000",
        ),
        (
            {**GLOBAL, "KUMA_MULTIZONE_GLOBAL_KDS_REFRESH_INTERVAL": "0s"},
            "multizone.global.kds.refreshInterval: must be positive",
        ),
        (
            {**GLOBAL, "KUMA_MULTIZONE_GLOBAL_KDS_TLS_CERT_FILE": "/etc/kds.crt"},
            "multizone.global.kds.tlsKeyFile: cannot be empty",
        ),
        (
            {**GLOBAL, "KUMA_MULTIZONE_GLOBAL_KDS_TLS_MIN_VERSION": "SSLv3"},
            "multizone.global.kds.tlsMinVersion: must be one of",
        ),
        (
            {**GLOBAL, "KUMA_MULTIZONE_GLOBAL_KDS_ZONE_HEALTH_CHECK_TIMEOUT": "5s"},
            "multizone.global.kds.zoneHealthCheck: timeout and pollInterval",
        ),
        # A duration must parse in every mode, standalone included.
        (
            {"KUMA_MULTIZONE_GLOBAL_KDS_NACK_BACKOFF": "soon"},
            "multizone.global.kds.nackBackoff: invalid duration 'soon'",
        ),
        ({"KUMA_MULTIZONE_GLOBAL_KDS_GRPC_PORT": "many"}, "multizone.global.kds.grpcPort"),
    ],
)
def test_bad_values_name_the_key(environ: dict[str, str], expected: str) -> None:
    assert expected in _error(environ)


def test_a_root_ca_that_is_not_pem_names_the_key(tmp_path: Path) -> None:
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate\n")
    message = _error(
        {
            **ZONE,
            "KUMA_MULTIZONE_ZONE_GLOBAL_ADDRESS": "grpcs://global:5685",
            "KUMA_MULTIZONE_ZONE_KDS_ROOT_CA_FILE": str(bogus),
        }
    )
    assert message.startswith("multizone.zone.kds.rootCaFile:")
    assert "no PEM certificate" in message


def test_unknown_multizone_keys_are_named(tmp_path: Path) -> None:
    message = _error({}, tmp_path, "multizone:\n  zone:\n    nmae: zone-1\n")
    assert message == "multizone.zone.nmae: unknown key"


def test_the_mode_must_be_a_word(tmp_path: Path) -> None:
    assert _error({}, tmp_path, "mode: 3\n").startswith("mode: must be standalone, zone or global")


def test_a_standalone_does_not_check_the_zone_section() -> None:
    # As in Kuma, only the section of the running mode is checked (durations apart).
    config = load_config(None, {"KUMA_MULTIZONE_ZONE_NAME": ""})
    assert config.mode == "standalone"
