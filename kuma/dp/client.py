"""kuma-dp's side of ``POST /bootstrap``: ask until the control plane answers.

A control plane that cannot be reached, answers 5xx, or does not know the Dataplane yet (404:
it may be applied later, as Kuma expects) is asked again after a growing pause, and each
attempt is logged. A refusal (400, 422) ends kuma-dp: asking again would get the same answer.
"""

from __future__ import annotations

import base64
import logging
import ssl
from typing import Any

import aiohttp
import anyio
import msgspec
import orjson

log = logging.getLogger("kuma.dp")

#: Pauses between attempts grow from FIRST_PAUSE to MAX_PAUSE seconds.
FIRST_PAUSE = 0.2
MAX_PAUSE = 2.0
ATTEMPT_TIMEOUT = 10.0


class BootstrapRefused(RuntimeError):
    """The control plane refused the request for good; the message holds its reasons."""


class Bootstrap(msgspec.Struct, frozen=True):
    #: Envoy's bootstrap (YAML).
    yaml: str
    #: Kuma's ``kumaSidecarConfiguration``.
    sidecar: dict[str, Any]


def bootstrap_url(cp_address: str) -> str:
    return cp_address.rstrip("/") + "/bootstrap"


def describe_refusal(status: int, body: bytes) -> str:
    """The control plane's error document as lines a person reads (field: reason)."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return f"HTTP {status}: {body.decode(errors='replace').strip()}"
    if not isinstance(document, dict):
        return f"HTTP {status}: {document!r}"
    lines = [f"HTTP {status}: {document.get('detail') or document.get('title') or 'refused'}"]
    for cause in document.get("causes") or []:
        if isinstance(cause, dict):
            lines.append(f"  {cause.get('field', '')}: {cause.get('message', '')}")
    return "\n".join(lines)


def _parse(body: bytes) -> Bootstrap:
    try:
        document = orjson.loads(body)
        text = base64.b64decode(document["bootstrap"]).decode()
        sidecar = document.get("kumaSidecarConfiguration") or {}
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise BootstrapRefused(f"the control plane's answer is not a bootstrap: {exc}") from None
    return Bootstrap(yaml=text, sidecar=sidecar if isinstance(sidecar, dict) else {})


def client_tls(ca_cert: str, *, skip_verify: bool) -> ssl.SSLContext | bool:
    """How an https:// control plane is checked: against ``ca_cert`` (PEM), with the host name
    kuma-dp was given; ``skip_verify``: not at all (loudly). Plain http ignores it."""
    if skip_verify:
        log.warning(
            "--skip-verify: the control plane's certificate is not verified; anyone on the path "
            "can impersonate it and read the dataplane token"
        )
        return False
    context = ssl.create_default_context(cadata=ca_cert or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


async def fetch_bootstrap(
    cp_address: str,
    request: dict[str, Any],
    *,
    tls: ssl.SSLContext | bool = True,
    first_pause: float = FIRST_PAUSE,
    max_pause: float = MAX_PAUSE,
) -> Bootstrap:
    """POST the request until a bootstrap comes back; raises BootstrapRefused on 4xx, and on
    a certificate that does not verify (asking again would not change it)."""
    url = bootstrap_url(cp_address)
    body = orjson.dumps(request)
    headers = {"Accept": "application/json", "Content-Type": "application/json"}
    pause = first_pause
    timeout = aiohttp.ClientTimeout(total=ATTEMPT_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout, trust_env=False) as session:
        attempt = 0
        while True:
            attempt += 1
            try:
                async with session.post(url, data=body, headers=headers, ssl=tls) as response:
                    status = response.status
                    payload = await response.read()
            except aiohttp.ClientConnectorCertificateError as exc:
                raise BootstrapRefused(
                    f"the control plane at {cp_address} is not who it should be: its "
                    f"certificate does not verify against --ca-cert-file "
                    f"({exc.certificate_error})"
                ) from None
            except (aiohttp.ClientError, TimeoutError) as exc:
                reason = f"cannot reach it: {exc or type(exc).__name__}"
            else:
                if status == 200:
                    return _parse(payload)
                if status == 404:
                    reason = "it does not know the Dataplane yet (404)"
                elif status < 500:
                    raise BootstrapRefused(describe_refusal(status, payload))
                else:
                    reason = describe_refusal(status, payload)
            log.info(
                "waiting for the control plane at %s (attempt %d, next in %.1fs): %s",
                cp_address,
                attempt,
                pause,
                reason,
            )
            await anyio.sleep(pause)
            pause = min(pause * 2, max_pause)
