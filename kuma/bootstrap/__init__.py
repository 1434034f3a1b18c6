"""The bootstrap server: ``POST /bootstrap`` turns kuma-dp's request into an Envoy bootstrap.

:mod:`.request` parses and checks the request and resolves its Dataplane, :mod:`.generator`
builds the bootstrap, :mod:`.handler` serves it over HTTP/1.1 (on the dp server port, beside
ADS). The same checks guard registrations at connect time (``kuma/cp/registration.py``).
"""

from __future__ import annotations

from .generator import GeneratorParams, admin_port, generate, sidecar_configuration, to_yaml
from .handler import BootstrapHandler, bootstrap_protocol, error_document
from .request import (
    BootstrapError,
    BootstrapRequest,
    decode_proxy_dataplane,
    parse_request,
    proxy_violations,
    resolve_dataplane,
)

__all__ = [
    "BootstrapError",
    "BootstrapHandler",
    "BootstrapRequest",
    "GeneratorParams",
    "admin_port",
    "bootstrap_protocol",
    "decode_proxy_dataplane",
    "error_document",
    "generate",
    "parse_request",
    "proxy_violations",
    "resolve_dataplane",
    "sidecar_configuration",
    "to_yaml",
]
