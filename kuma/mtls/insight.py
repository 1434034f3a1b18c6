"""The ``mTLS`` section of a DataplaneInsight (Kuma's ``DataplaneInsight.MTLS``): the proxy's
certificate expiry, last regeneration, how many times it was regenerated, the backend that
issued it and the backends its mesh supports.

Certificates live in the memory of the instance the proxy is connected to (never persisted),
so the section is added when that instance answers; another instance's API shows the
subscriptions without it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kuma.api.insights import InsightProvider
from kuma.insights.model import timestamp

from .identities import Identities


class MtlsInsights:
    """An InsightProvider adding the ``mTLS`` section to another one's insights."""

    def __init__(self, base: InsightProvider, identities: Identities) -> None:
        self._base = base
        self._identities = identities

    def insight(self, mesh: str, name: str) -> Mapping[str, Any] | None:
        document = self._base.insight(mesh, name)
        section = mtls_section(self._identities, f"{mesh}.{name}")
        if section is None:
            return document
        return {**(document or {}), "mTLS": section}


def mtls_section(identities: Identities, node_id: str) -> dict[str, Any] | None:
    issued = identities.issued(node_id)
    if issued is None:
        return None
    section: dict[str, Any] = {
        "certificateExpirationTime": timestamp(issued.not_after),
        "lastCertificateRegeneration": timestamp(issued.issued_at),
        "issuedBackend": issued.backend,
        "supportedBackends": [issued.backend],
    }
    if issued.generation:
        section["certificateRegenerations"] = issued.generation
    return section
