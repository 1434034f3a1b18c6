"""The ``apiServer`` keys of kuma-cp's configuration that the API adds."""

from __future__ import annotations

import pytest

from kuma.cp.config import ConfigError, load_config


def test_defaults() -> None:
    api = load_config(None, {}).api_server
    assert (api.http.interface, api.http.port) == ("127.0.0.1", 5681)
    assert api.auth.admin_token == ""
    assert api.max_request_bytes == 1024 * 1024


def test_environment_overrides() -> None:
    api = load_config(
        None,
        {
            "KUMA_API_SERVER_HTTP_INTERFACE": "0.0.0.0",
            # Taken verbatim: not a number, not a list.
            "KUMA_API_SERVER_AUTH_ADMIN_TOKEN": "0123,456",
            "KUMA_API_SERVER_MAX_REQUEST_BYTES": "2048",
        },
    ).api_server
    assert api.http.interface == "0.0.0.0"
    assert api.auth.admin_token == "0123,456"
    assert api.max_request_bytes == 2048


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"KUMA_API_SERVER_MAX_REQUEST_BYTES": "0"},
            "apiServer.maxRequestBytes: must be a positive number of bytes, got 0",
        ),
        ({"KUMA_API_SERVER_MAX_REQUEST_BYTES": "lots"}, "apiServer.maxRequestBytes"),
    ],
)
def test_bad_values_name_the_key(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, env)
