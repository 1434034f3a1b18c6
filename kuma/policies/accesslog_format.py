"""The input checks MeshAccessLog's validator takes from govalidator (``IsFilePath``,
``IsURL``, ``IsJSON``), rebuilt from their documented rules.

``IsURL`` is approximated: govalidator's structural checks (an address with a port but no
scheme gets ``http://`` for parsing; a host must exist or the path must hold a dot; no
leading dot) and a host[:port][/path] pattern in place of its long URL expression. Kuma's
cases (``127.0.0.1:5000``, ``http://logs.com``, ``logging.backend``, ``not_valid_url``)
come out as in Kuma.
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

_UNIX_PATH = re.compile(r"^(/[^/\x00]*)+/?$")
_WINDOWS_PATH = re.compile(r'^[a-zA-Z]:\\(?:[^\\/:*?"<>|\r\n]+\\)*[^\\/:*?"<>|\r\n]*$')
_LABEL = r"[A-Za-z0-9_](?:[-A-Za-z0-9_]*[A-Za-z0-9_])?"
_URL = re.compile(
    r"^(?:[A-Za-z][A-Za-z0-9+.-]*://)?"  # scheme
    r"(?:[^@/\s]+@)?"  # user info
    rf"(?:\[[0-9A-Fa-f:.]+\]|{_LABEL}(?:\.{_LABEL})*)"  # host: IPv6 literal or name/IPv4
    r"(?::\d{1,5})?"  # port
    r"(?:[/?#]\S*)?$"  # path, query, fragment
)
_MAX_URL = 2083
_MIN_URL = 3


def is_file_path(value: str) -> bool:
    """govalidator's ``IsFilePath``: an absolute Unix path or a Windows drive path."""
    return bool(_WINDOWS_PATH.match(value) or _UNIX_PATH.match(value))


def is_url(value: str) -> bool:
    """govalidator's ``IsURL`` (see the module's docstring)."""
    if not value or len(value) >= _MAX_URL or len(value) <= _MIN_URL or value.startswith("."):
        return False
    parsed = value
    if ":" in value and "://" not in value:
        parsed = "http://" + value
    try:
        parts = urlsplit(parsed)
        host = parts.netloc
    except ValueError:
        return False
    if host.startswith("."):
        return False
    if not host and parts.path and "." not in parts.path:
        return False
    return bool(_URL.match(value))


def json_pair_is_valid(key: str, value: str) -> bool:
    """Kuma's check of a JSON format entry: ``{"<key>": "<value>"}`` must parse as JSON (so
    a raw quote or a bad escape in either is refused)."""
    try:
        json.loads(f'{{"{key}": "{value}"}}')
    except ValueError:
        return False
    return True
