"""The ``mTLS`` section of a DataplaneInsight (Kuma's ``DataplaneInsight.MTLS``): the proxy's
certificate expiry, last regeneration, how many times it was regenerated, the backend that
issued it and the backends its mesh supports.

Certificates live in the memory of the instance the proxy is connected to (never persisted).
That instance's insight tracker reports the certificate with the proxy's subscription
(:func:`mtls_status`), and it is written into the stored insight like the counters
(``kuma.insights.model.fold_mtls``), so every instance sharing the store, and global through
KDS, shows it. ``MtlsService.on_certificates`` marks a proxy's subscription changed when its
certificate does, so a rotation reaches the store with the next flush.
"""

from __future__ import annotations

from functools import partial

from kuma.insights.model import MtlsInsight
from kuma.insights.tracker import InsightTracker

from .identities import Identities
from .service import MtlsService


def mtls_status(identities: Identities, node_id: str) -> MtlsInsight | None:
    """The certificate this instance serves the proxy, or None (none issued, mTLS off)."""
    issued = identities.issued(node_id)
    if issued is None:
        return None
    return MtlsInsight(
        certificate_expiration_time=issued.not_after,
        last_certificate_regeneration=issued.issued_at,
        issued_backend=issued.backend,
        # Kuma's builtin and provided CAs support the mesh's one enabled backend.
        supported_backends=_backends(issued.backend),
    )


def _backends(backend: str) -> tuple[str, ...]:
    """One tuple per backend name, shared by the insights of its proxies."""
    shared = _SUPPORTED.get(backend)
    if shared is None:
        if len(_SUPPORTED) > 256:  # bounded: names of backends long gone
            _SUPPORTED.clear()
        shared = _SUPPORTED[backend] = (backend,)
    return shared


_SUPPORTED: dict[str, tuple[str, ...]] = {}


def report_certificates(tracker: InsightTracker, mtls: MtlsService) -> None:
    """Put the certificates ``mtls`` issues into the insights ``tracker`` writes."""
    tracker.mtls_of = partial(mtls_status, mtls.identities)
    mtls.on_certificates = tracker.touch
