"""Where kuma-dp's access-log pipe lives: kuma-dp's streamer (:mod:`kuma.dp.accesslogs`)
creates it in its config dir and announces it (``accessLogSocketPath``, node metadata); the
control plane points MeshAccessLog's Tcp backends there (:mod:`kuma.policies.accesslog_tcp`),
or, when a proxy announces none, at Kuma's fallback in its temp dir
(``pkg/core/xds/metadata.go``)."""

from __future__ import annotations

import os
from pathlib import Path

#: The node metadata key (and bootstrap request field) naming kuma-dp's access-log pipe.
ACCESS_LOG_SOCKET_KEY = "accessLogSocketPath"
#: Kuma's ``socketName``: the path (before ``.sock``) is cut to fit unix socket path limits.
_MAX_STEM = 98


def go_temp_dir() -> str:
    """Go's ``os.TempDir`` on Unix: ``$TMPDIR``, else ``/tmp``."""
    return os.environ.get("TMPDIR") or "/tmp"


def access_log_socket_name(directory: str, name: str, mesh: str) -> str:
    """Kuma's ``AccessLogSocketName``: ``<dir>/kuma-al-<name>-<mesh>.sock``, stem cut to 98."""
    stem = str(Path(directory) / f"kuma-al-{name}-{mesh}")
    return stem[:_MAX_STEM] + ".sock"
