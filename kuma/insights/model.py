"""DataplaneInsight: Kuma's record of a proxy's ADS subscriptions, and its JSON form.

A *subscription* is one ADS stream of a proxy to one control-plane instance: when it connected
and disconnected, how many responses of each type were sent, acknowledged and rejected, and the
versions of Envoy and kuma-dp behind it (``api/mesh/v1alpha1/dataplane_insight.proto``). An
insight keeps the last :data:`MAX_SUBSCRIPTIONS` of them, oldest first, never dropping the one
a connected proxy is served through; a proxy is online when one of them has a connect time and
no disconnect time.

The structs here are frozen snapshots (what is flushed and stored). The counters a live stream
mutates are in :mod:`.tracker`. Times are Unix seconds (floats) and become RFC 3339 only in
:func:`insight_json`, which renders Kuma's protojson shape: uint64 counters as strings, zero
counters and empty strings left out, an all-zero stats object as ``{}``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

#: Kuma keeps the last two subscriptions of a proxy.
MAX_SUBSCRIPTIONS = 2
#: Online subscriptions are kept beyond that history, up to this many (see ``_bounded``).
MAX_ONLINE = 16

#: The per-type stats objects of a subscription status, in Kuma's order.
STAT_TYPES: tuple[str, ...] = ("cds", "eds", "lds", "rds")

#: Kuma's ``Version``: ``{"kumaDp": {version, gitTag, gitCommit, buildDate},
#: "envoy": {version, build}}``; missing parts are empty.
Version = dict[str, dict[str, str]]


class DiscoveryServiceStats(msgspec.Struct, frozen=True):
    responses_sent: int = 0
    responses_acknowledged: int = 0
    responses_rejected: int = 0


_ZERO = DiscoveryServiceStats()


class SubscriptionStatus(msgspec.Struct, frozen=True):
    #: Last response sent or ACK/NACK received (Unix seconds).
    last_update_time: float | None = None
    total: DiscoveryServiceStats = _ZERO
    cds: DiscoveryServiceStats = _ZERO
    eds: DiscoveryServiceStats = _ZERO
    lds: DiscoveryServiceStats = _ZERO
    rds: DiscoveryServiceStats = _ZERO


class MtlsInsight(msgspec.Struct, frozen=True):
    """Kuma's ``DataplaneInsight.MTLS``: the proxy's current workload certificate."""

    certificate_expiration_time: float
    last_certificate_regeneration: float
    issued_backend: str
    supported_backends: tuple[str, ...]
    #: Certificates the insight has seen this proxy get (Kuma's ``UpdateCert`` counter).
    certificate_regenerations: int = 0


class DiscoverySubscription(msgspec.Struct, frozen=True):
    id: str
    control_plane_instance_id: str
    connect_time: float
    disconnect_time: float | None = None
    status: SubscriptionStatus = SubscriptionStatus()
    version: Version = msgspec.field(default_factory=dict)
    #: The certificate the serving instance holds for the proxy when this was taken (None:
    #: none, e.g. mTLS off). Not part of Kuma's subscription: folded into the insight's
    #: ``mTLS`` section when written (:func:`fold_mtls`), so every instance reads it.
    mtls: MtlsInsight | None = None

    @property
    def online(self) -> bool:
        return self.disconnect_time is None


class DataplaneInsight(msgspec.Struct, frozen=True):
    #: Oldest first; at most :data:`MAX_SUBSCRIPTIONS`, unless more are online.
    subscriptions: tuple[DiscoverySubscription, ...] = ()
    mtls: MtlsInsight | None = None

    @property
    def online(self) -> bool:
        return any(s.online for s in self.subscriptions)


def update_subscription(
    insight: DataplaneInsight | None,
    subscription: DiscoverySubscription,
    *,
    now: float,
    live: frozenset[str] = frozenset(),
) -> DataplaneInsight:
    """Kuma's ``UpdateSubscription``: replace the subscription with the same id, else append it.

    Appending first closes the older subscriptions of *other* instances still marked connected
    (``now``) unless their id is in ``live``: a control plane that died never wrote their
    disconnect time, and without it the proxy would look online forever. The writing
    instance's own subscriptions are left alone: it is alive (it is writing) and writes each
    one's disconnect time when its stream closes, so a stream it still holds open stays online.
    Then :func:`_bounded` keeps Kuma's history length without the live subscription.

    One refinement over Kuma, for instances sharing a store: a subscription older than those
    held (its instance noticed a half-open stream late, after the proxy had reconnected twice
    elsewhere) goes in its place by connect time, and closes only older ones, never the newer
    subscription through which the proxy is connected now.
    """
    existing = insight.subscriptions if insight is not None else ()
    mtls = fold_mtls(insight.mtls if insight is not None else None, subscription)
    if subscription.mtls is not None:  # folded into the insight: not kept twice
        subscription = msgspec.structs.replace(subscription, mtls=None)
    for index, old in enumerate(existing):
        if old.id == subscription.id:
            replaced = (*existing[:index], subscription, *existing[index + 1 :])
            return DataplaneInsight(replaced, mtls)
    connected = subscription.connect_time
    writer = subscription.control_plane_instance_id
    finalized = [
        msgspec.structs.replace(old, disconnect_time=now)
        if old.disconnect_time is None
        and old.id not in live
        and old.control_plane_instance_id != writer
        and old.connect_time <= connected
        else old
        for old in existing
    ]
    finalized.append(subscription)
    return _bounded(finalized, mtls)


def fold_mtls(
    stored: MtlsInsight | None, subscription: DiscoverySubscription
) -> MtlsInsight | None:
    """The insight's ``mTLS`` section after ``subscription`` is written, as Kuma's status sink
    updates it: a connected stream without a certificate clears it (mTLS off); one whose
    certificate differs from the stored one (expiry, issuing or supported backends) replaces
    it and counts one more regeneration; a closed stream leaves it as it was (its instance no
    longer knows the proxy's certificate)."""
    if not subscription.online:
        return stored
    reported = subscription.mtls
    if reported is None or stored is None:
        if reported is None:
            return None
        return msgspec.structs.replace(reported, certificate_regenerations=1)
    if (
        # As stored (RFC 3339 to the microsecond): a store that keeps JSON must not see a
        # new certificate in every flush.
        timestamp(stored.certificate_expiration_time)
        == timestamp(reported.certificate_expiration_time)
        and stored.issued_backend == reported.issued_backend
        and stored.supported_backends == reported.supported_backends
    ):
        return stored
    return msgspec.structs.replace(
        reported, certificate_regenerations=stored.certificate_regenerations + 1
    )


def _bounded(
    subscriptions: list[DiscoverySubscription], mtls: MtlsInsight | None = None
) -> DataplaneInsight:
    """Kuma's history (the last :data:`MAX_SUBSCRIPTIONS` by connect time), except that online
    subscriptions are never pushed out by newer ones: a storm of short streams under the proxy's
    id (reconnects, or anyone on the network) would otherwise make a live proxy look offline.
    Closed ones fill what room is left; at most :data:`MAX_ONLINE` online ones (the newest) are
    kept, which bounds an insight's size whatever opens streams under the id."""
    subscriptions.sort(key=lambda s: s.connect_time)  # stable: equal times keep arrival order
    online = [s for s in subscriptions if s.online][-MAX_ONLINE:]
    if not online:
        return DataplaneInsight(tuple(subscriptions[-MAX_SUBSCRIPTIONS:]), mtls)
    room = MAX_SUBSCRIPTIONS - len(online)
    closed = [s for s in subscriptions if not s.online][-room:] if room > 0 else []
    kept = [*online, *closed]
    kept.sort(key=lambda s: s.connect_time)
    return DataplaneInsight(tuple(kept), mtls)


def merge_live(
    stored: DataplaneInsight | None, live: list[DiscoverySubscription]
) -> DataplaneInsight | None:
    """The stored insight with this instance's live subscriptions laid over it (by id).

    Unlike :func:`update_subscription` nothing is finalized: this is a read, not a write.
    """
    if not live:
        return stored
    subscriptions = list(stored.subscriptions) if stored is not None else []
    mtls = stored.mtls if stored is not None else None
    for subscription in live:
        mtls = fold_mtls(mtls, subscription)
        for index, old in enumerate(subscriptions):
            if old.id == subscription.id:
                subscriptions[index] = subscription
                break
        else:
            subscriptions.append(subscription)
    return _bounded(subscriptions, mtls)


# --- Kuma's JSON ---------------------------------------------------------------------------


def timestamp(seconds: float) -> str:
    """RFC 3339 in UTC with microseconds, as Kuma writes it (``2019-10-24T14:04:56.820350Z``)."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _stats_json(stats: DiscoveryServiceStats) -> dict[str, str]:
    # protojson: uint64 is a string, and a zero is not written at all.
    out: dict[str, str] = {}
    if stats.responses_sent:
        out["responsesSent"] = str(stats.responses_sent)
    if stats.responses_acknowledged:
        out["responsesAcknowledged"] = str(stats.responses_acknowledged)
    if stats.responses_rejected:
        out["responsesRejected"] = str(stats.responses_rejected)
    return out


def _version_json(version: Version) -> dict[str, dict[str, str]]:
    return {part: {k: v for k, v in fields.items() if v} for part, fields in version.items()}


def subscription_json(subscription: DiscoverySubscription) -> dict[str, Any]:
    status = subscription.status
    status_json: dict[str, Any] = {}
    if status.last_update_time is not None:
        status_json["lastUpdateTime"] = timestamp(status.last_update_time)
    status_json["total"] = _stats_json(status.total)
    for name in STAT_TYPES:
        status_json[name] = _stats_json(getattr(status, name))
    out: dict[str, Any] = {
        "id": subscription.id,
        "controlPlaneInstanceId": subscription.control_plane_instance_id,
        "connectTime": timestamp(subscription.connect_time),
    }
    if subscription.disconnect_time is not None:
        out["disconnectTime"] = timestamp(subscription.disconnect_time)
    out["status"] = status_json
    if subscription.version:
        out["version"] = _version_json(subscription.version)
    return out


def mtls_json(mtls: MtlsInsight) -> dict[str, Any]:
    out: dict[str, Any] = {
        "certificateExpirationTime": timestamp(mtls.certificate_expiration_time),
        "lastCertificateRegeneration": timestamp(mtls.last_certificate_regeneration),
    }
    if mtls.certificate_regenerations:  # uint32: a JSON number, left out when zero
        out["certificateRegenerations"] = mtls.certificate_regenerations
    if mtls.issued_backend:
        out["issuedBackend"] = mtls.issued_backend
    if mtls.supported_backends:
        out["supportedBackends"] = list(mtls.supported_backends)
    return out


def insight_json(insight: DataplaneInsight) -> dict[str, Any]:
    """Kuma's JSON of a DataplaneInsight spec (the ``dataplaneInsight`` of an overview)."""
    out: dict[str, Any] = {"subscriptions": [subscription_json(s) for s in insight.subscriptions]}
    if insight.mtls is not None:
        out["mTLS"] = mtls_json(insight.mtls)
    return out


def _seconds(raw: object) -> float:
    if not isinstance(raw, str):
        raise ValueError(f"expected an RFC 3339 time, got {raw!r}")
    moment = datetime.fromisoformat(raw)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _object(raw: object, what: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ValueError(f"{what}: expected an object, got {raw!r}")
    return raw


def _stats(raw: object) -> DiscoveryServiceStats:
    fields = _object(raw, "stats")
    return DiscoveryServiceStats(
        int(fields.get("responsesSent", 0)),
        int(fields.get("responsesAcknowledged", 0)),
        int(fields.get("responsesRejected", 0)),
    )


def _subscription(raw: object) -> DiscoverySubscription:
    fields = _object(raw, "subscription")
    status = _object(fields.get("status", {}), "status")
    last = status.get("lastUpdateTime")
    version = _object(fields.get("version", {}), "version")
    return DiscoverySubscription(
        id=str(fields["id"]),
        control_plane_instance_id=str(fields.get("controlPlaneInstanceId", "")),
        connect_time=_seconds(fields["connectTime"]),
        disconnect_time=_seconds(fields["disconnectTime"]) if "disconnectTime" in fields else None,
        status=SubscriptionStatus(
            last_update_time=_seconds(last) if last is not None else None,
            total=_stats(status.get("total", {})),
            **{name: _stats(status.get(name, {})) for name in STAT_TYPES},
        ),
        version={
            str(part): {str(k): str(v) for k, v in _object(values, part).items()}
            for part, values in version.items()
        },
    )


def _mtls(raw: object) -> MtlsInsight:
    fields = _object(raw, "mTLS")
    backends = fields.get("supportedBackends", [])
    if not isinstance(backends, list):
        raise ValueError(f"mTLS.supportedBackends: expected a list, got {backends!r}")
    return MtlsInsight(
        certificate_expiration_time=_seconds(fields["certificateExpirationTime"]),
        last_certificate_regeneration=_seconds(fields["lastCertificateRegeneration"]),
        issued_backend=str(fields.get("issuedBackend", "")),
        supported_backends=tuple(str(b) for b in backends),
        certificate_regenerations=int(fields.get("certificateRegenerations", 0)),
    )


def insight_from_json(doc: object) -> DataplaneInsight:
    """The inverse of :func:`insight_json` (times to microseconds); ValueError when ``doc`` is
    not such a document (a value in a shared store may have been written by anyone)."""
    try:
        subscriptions = _object(doc, "insight").get("subscriptions", [])
        if not isinstance(subscriptions, list):
            raise ValueError(f"subscriptions: expected a list, got {subscriptions!r}")
        raw_mtls = _object(doc, "insight").get("mTLS")
        return DataplaneInsight(
            tuple(_subscription(s) for s in subscriptions),
            _mtls(raw_mtls) if raw_mtls is not None else None,
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not a DataplaneInsight: {exc!r}") from None


def is_online(insight: dict[str, Any] | None) -> bool:
    """Kuma's rule on the JSON form: some subscription connected and not disconnected."""
    if not insight:
        return False
    return any(
        "connectTime" in s and "disconnectTime" not in s for s in insight.get("subscriptions", ())
    )
