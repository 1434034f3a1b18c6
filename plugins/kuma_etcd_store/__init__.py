"""The etcd store plugin (entry point ``etcd`` of the ``kuma.stores`` group).

Configuration, the ``store.etcd`` section of kuma-cp's config::

    store:
      type: etcd
      etcd:
        endpoints: [http://127.0.0.1:2379]   # required
        prefix: /kuma                         # resources under it, insights beside it
        request_timeout: 5.0                  # seconds, every unary call
        keepalive_time: 6.0                   # seconds between keepalive pings on watches
        keepalive_timeout: 3.0                # an unanswered ping closes the connection
        max_retry_backoff: 2.0                # seconds, upper bound of the watch's backoff
        page_size: 1000                       # keys per range request of a snapshot

See ``layout`` for the key layout, ``store`` for reads and writes, ``watch`` for how a watch
survives disconnects, compaction and a wiped etcd, ``insights`` for the DataplaneInsights that
the instances share under ``<prefix>-insights/`` (outside every resource watch).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aetcd
import anyio

from .config import EtcdOptions, parse_options
from .store import EtcdStore

__all__ = ["EtcdOptions", "EtcdStore", "open_etcd_store", "parse_options"]


@asynccontextmanager
async def open_etcd_store(options: Mapping[str, Any]) -> AsyncIterator[EtcdStore]:
    """Open the store. etcd need not be up yet: calls fail with StoreUnavailableError until it
    is, and watches keep retrying."""
    parsed = parse_options(options)
    host, port = parsed.grpc_target
    client = aetcd.Client(
        host=host, port=port, timeout=parsed.request_timeout, options=parsed.channel_options()
    )
    await client.connect()  # creates the channel only; gRPC connects on the first call
    async with anyio.create_task_group() as task_group:
        store = EtcdStore(client, parsed, task_group)
        try:
            yield store
        finally:
            await store.close()
