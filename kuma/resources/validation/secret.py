"""Secret and GlobalSecret rules. Kuma refuses an empty value ("data source cannot be
empty"); this project also refuses a value that is not base64, since every reader decodes it.
No message here ever quotes the value: it is secret even when it is malformed."""

from __future__ import annotations

import binascii
from base64 import b64decode

from ..errors import Violation
from ..model import GlobalSecret, Secret
from .common import check_mesh_name, check_name


def validate_secret(secret: Secret | GlobalSecret, out: list[Violation]) -> None:
    check_name(out, "name", secret.name)
    if isinstance(secret, Secret):
        check_mesh_name(out, secret.mesh)
    if not secret.data:
        out.append(Violation("data", "cannot be empty"))
        return
    try:
        b64decode(secret.data, validate=True)
    except (binascii.Error, ValueError):
        out.append(Violation("data", "must be base64 (the value itself is not shown)"))
