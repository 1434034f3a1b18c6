"""Filters decoded once per block (kuma/policies/decoded.py): edits inside a block land in the
packed bytes at its end, exactly as edits packed one by one; a filter replaced while decoded is
an error unless the chain was settled first."""

from __future__ import annotations

import pytest
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from kuma.policies.decoded import DecodedFilters, FilterReplaced, add_filter, settle
from kuma.policies.plugin import update_tcp_proxy


def _listener(packed_now: bool) -> listener_pb2.Listener:
    listener = listener_pb2.Listener(name="l")
    chain = listener.filter_chains.add()
    proxy = tcp_proxy_pb2.TcpProxy(stat_prefix="s", cluster="c")
    if packed_now:
        chain.filters.add(name="tcp").typed_config.Pack(proxy)
    else:
        add_filter(chain, "tcp", proxy)
    return listener


def _proxy(listener: listener_pb2.Listener) -> tcp_proxy_pb2.TcpProxy:
    proxy = tcp_proxy_pb2.TcpProxy()
    assert listener.filter_chains[0].filters[0].typed_config.Unpack(proxy)
    return proxy


def _edits(listener: listener_pb2.Listener) -> None:
    chain = listener.filter_chains[0]
    update_tcp_proxy(chain, lambda p: setattr(p, "cluster", "first"))
    update_tcp_proxy(chain, lambda p: setattr(p, "stat_prefix", p.cluster + "-second"))


def test_edits_in_a_block_equal_edits_packed_one_by_one() -> None:
    one_by_one = _listener(packed_now=True)
    _edits(one_by_one)
    with DecodedFilters():
        in_block = _listener(packed_now=False)  # handed over decoded: no bytes yet
        assert in_block.filter_chains[0].filters[0].typed_config.value == b""
        _edits(in_block)
        with DecodedFilters():  # joins the open block
            update_tcp_proxy(in_block.filter_chains[0], lambda p: None)
        assert in_block.filter_chains[0].filters[0].typed_config.value == b""
    assert in_block.SerializeToString(deterministic=True) == one_by_one.SerializeToString(
        deterministic=True
    )
    assert _proxy(in_block).stat_prefix == "first-second"


def _edit_then_reorder(settled: bool) -> listener_pb2.Listener:
    """Edit the TCP proxy, then put a filter in front of it by copying the chain's filters
    (as MeshRateLimit does), settling the chain first or not."""
    with DecodedFilters():
        listener = _listener(packed_now=True)
        chain = listener.filter_chains[0]
        update_tcp_proxy(chain, lambda p: setattr(p, "cluster", "kept"))
        if settled:
            settle(chain)
        kept = list(chain.filters)  # copies, with the bytes packed so far
        del chain.filters[:]
        chain.filters.add(name="first")
        chain.filters.extend(kept)
        update_tcp_proxy(chain, lambda p: setattr(p, "stat_prefix", "after"))
    return listener


def test_a_filter_replaced_while_decoded_raises_unless_settled() -> None:
    with pytest.raises(FilterReplaced):
        _edit_then_reorder(settled=False)
    listener = _edit_then_reorder(settled=True)
    proxy = tcp_proxy_pb2.TcpProxy()
    assert listener.filter_chains[0].filters[1].typed_config.Unpack(proxy)
    assert (proxy.cluster, proxy.stat_prefix) == ("kept", "after")
