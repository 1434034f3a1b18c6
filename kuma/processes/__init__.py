"""Child processes the project starts and stops by PID: kuma-load (etcd, the control plane
under test) and the tests (etcd, kuma-cp, Envoy) share these."""

from __future__ import annotations

from .etcd import EtcdServer, etcd_binary
from .managed import ManagedProcess, ProcessFailed
from .ports import free_port

__all__ = ["EtcdServer", "ManagedProcess", "ProcessFailed", "etcd_binary", "free_port"]
