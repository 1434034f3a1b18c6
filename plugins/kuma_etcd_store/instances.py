"""Which kuma-cp instances sharing the etcd are alive: one key per instance, on a lease.

Every instance puts ``<prefix>-instances/<instance id>`` attached to an etcd lease of
:data:`LEASE_TTL` seconds and refreshes the lease a few times per TTL. An instance that stops
revokes it; one that is killed (``kill -9``, a crashed host) stops refreshing, and etcd drops
the key once the TTL has run out. The set of keys is the set of live instances: what the
orphan collector (``kuma/cp/orphans.py``) needs to tell a subscription that looks online
because its instance died from one that is.

Like ``<prefix>-insights/``, the prefix is a sibling of the resources' ``<prefix>/``: outside
every resource watch (``-`` sorts before ``/``).
"""

from __future__ import annotations

import logging
from typing import Any

import anyio

from .follow import EtcdConnection

log = logging.getLogger(__name__)

#: Seconds a killed instance still counts as alive.
LEASE_TTL = 5
#: Refreshes per TTL.
_REFRESHES = 3
SUFFIX = "-instances"


class EtcdInstances:
    def __init__(self, connection: EtcdConnection, resources_root: bytes) -> None:
        self.root = resources_root.rstrip(b"/") + SUFFIX.encode() + b"/"
        self._client = connection.client
        self._kv = connection.kv

    async def keep_alive(self, instance_id: str) -> None:
        """Hold this instance's key until cancelled (then revoke it); re-create it whenever
        the lease was lost (etcd unreachable longer than the TTL)."""
        key = self.root + instance_id.encode()
        reported = False
        while True:
            lease: Any = None
            try:
                lease = await self._client.lease(LEASE_TTL)
                await self._client.put(key, b"", lease=lease)
                reported = False
                while True:
                    await anyio.sleep(LEASE_TTL / _REFRESHES)
                    reply = await lease.refresh()
                    if reply is None or reply.TTL <= 0:
                        break  # expired meanwhile: put the key again on a new lease
            except anyio.get_cancelled_exc_class():
                if lease is not None:
                    with anyio.move_on_after(1, shield=True):
                        await _revoke(lease)
                raise
            except Exception as exc:  # etcd unreachable: keep trying, say it once
                if not reported:
                    log.warning("cannot keep this instance's liveness key in etcd: %r", exc)
                    reported = True
                await anyio.sleep(1)

    async def live(self) -> frozenset[str]:
        """The ids of the instances whose key exists now."""
        scan = await self._kv.scan(self.root, page_size=1000, keys_only=True)
        return frozenset(item.key[len(self.root) :].decode() for item in scan.kvs)


async def _revoke(lease: Any) -> None:
    try:
        await lease.revoke()
    except Exception as exc:  # stopping anyway; the TTL will do it
        log.debug("could not revoke the liveness lease: %r", exc)
