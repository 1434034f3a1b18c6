"""Where kumactl finds the API server, first match wins:

1. ``--api-server URL``;
2. ``$KUMACTL_API_SERVER``;
3. the config file (``--config-file``, else ``$KUMACTL_CONFIG``, else ``~/.kumactl/config``)
   in Kuma's kumactl format: the current context's control plane,
   ``coordinates.apiServer.url``;
4. ``http://127.0.0.1:5681``.

The admin token (sent as ``Authorization: Bearer``) comes from ``$KUMACTL_AUTH_TOKEN``, else
from that control plane's ``authType: tokens`` / ``authConf.token``, as Kuma stores it::

    currentContext: local
    contexts:
    - name: local
      controlPlane: local
    controlPlanes:
    - name: local
      coordinates:
        apiServer:
          url: http://127.0.0.1:5681
          authType: tokens
          authConf: {token: ...}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import CliError

DEFAULT_API_SERVER = "http://127.0.0.1:5681"
DEFAULT_CONFIG = Path("~/.kumactl/config")


@dataclass(frozen=True)
class Target:
    url: str
    token: str | None


def _control_plane(path: Path) -> Mapping[str, Any] | None:
    """The API server coordinates of the config's current context, or None."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CliError(f"could not read the kumactl config {path}: {exc.strerror}") from None
    try:
        config = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise CliError(f"the kumactl config {path} is not valid YAML: {exc}") from None
    if not isinstance(config, dict):
        raise CliError(f"the kumactl config {path} must be a mapping")
    current = config.get("currentContext")
    if not current:
        return None
    contexts = {c.get("name"): c for c in config.get("contexts") or [] if isinstance(c, dict)}
    context = contexts.get(current)
    if context is None:
        raise CliError(f"the kumactl config {path}: currentContext {current!r} is not defined")
    planes = {p.get("name"): p for p in config.get("controlPlanes") or [] if isinstance(p, dict)}
    plane = planes.get(context.get("controlPlane"))
    if plane is None:
        raise CliError(
            f"the kumactl config {path}: control plane {context.get('controlPlane')!r} "
            f"of context {current!r} is not defined"
        )
    server = (plane.get("coordinates") or {}).get("apiServer") or {}
    return server if isinstance(server, dict) else None


def resolve(api_server: str | None, config_file: Path | None, environ: Mapping[str, str]) -> Target:
    url = api_server or environ.get("KUMACTL_API_SERVER") or None
    token = environ.get("KUMACTL_AUTH_TOKEN") or None
    if url is None or token is None:
        path = config_file or Path(environ.get("KUMACTL_CONFIG") or DEFAULT_CONFIG).expanduser()
        server = _control_plane(path)
        if server is not None:
            url = url or server.get("url") or None
            if token is None and server.get("authType") == "tokens":
                token = (server.get("authConf") or {}).get("token") or None
    url = url or DEFAULT_API_SERVER
    if not url.startswith(("http://", "https://")):
        raise CliError(f"the API server address must be an http:// or https:// URL, got {url!r}")
    return Target(url, token)
