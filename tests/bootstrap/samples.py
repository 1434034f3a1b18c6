"""Shared bits of the bootstrap tests: a Dataplane as kuma-dp sends it, and requests."""

from __future__ import annotations

from typing import Any

import orjson
import yaml

WEB: dict[str, Any] = {
    "type": "Dataplane",
    "mesh": "default",
    "name": "web-01",
    "networking": {
        "address": "192.168.0.10",
        "inbound": [
            {
                "port": 18080,
                "servicePort": 8080,
                "serviceAddress": "127.0.0.1",
                "tags": {"kuma.io/service": "web", "kuma.io/protocol": "http"},
            }
        ],
        "outbound": [{"port": 10001, "tags": {"kuma.io/service": "backend"}}],
    },
}


def dataplane(**networking: Any) -> dict[str, Any]:
    """WEB with ``networking`` keys replaced (None removes one)."""
    document = {**WEB, "networking": {**WEB["networking"], **networking}}
    document["networking"] = {k: v for k, v in document["networking"].items() if v is not None}
    return document


def request(resource: dict[str, Any] | str | None = None, **fields: Any) -> dict[str, Any]:
    """A bootstrap request like kuma-dp's, carrying ``resource`` (WEB by default) as JSON."""
    body: dict[str, Any] = {
        "mesh": "default",
        "name": "web-01",
        "proxyType": "dataplane",
        "dataplaneToken": "",
        "version": {
            "kumaDp": {"version": "0.1.0", "gitTag": "v0.1.0", "gitCommit": "abc", "buildDate": ""},
            "envoy": {"version": "1.40.0", "build": "rev/1.40.0/Clean/RELEASE/BoringSSL"},
        },
        "operatingSystem": "linux",
        "features": [],
    }
    if resource is None:
        resource = WEB
    if resource != "":
        body["dataplaneResource"] = (
            resource if isinstance(resource, str) else orjson.dumps(resource).decode()
        )
    body.update(fields)
    return body


def load_yaml(text: str) -> Any:
    return yaml.safe_load(text)
