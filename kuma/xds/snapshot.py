"""Serialized, versioned resources: what the engine hands to the protocol servers.

Every resource is serialized once (deterministically) and its version is a hash of those bytes,
so identical content has an identical version across proxies, across CP instances and across
restarts: a reconnecting proxy that presents its versions is sent nothing it already has.
"""

from __future__ import annotations

import hashlib

import msgspec
from google.protobuf.message import Message


class VersionedResource(msgspec.Struct, frozen=True, weakref=True):
    """One Envoy resource ready to send. ``body`` is the serialized message (not the Any).

    Instances are shared by every proxy whose config holds the same content (see
    ``kuma.xds.engine.interner``), so a proxy's memory does not grow with what it shares."""

    type_url: str
    name: str
    version: str
    body: bytes


def content_version(body: bytes) -> str:
    # 16 hex digits (64 bits) of BLAKE2b: collisions are out of reach for any mesh size, and the
    # version string stays short on the wire (it travels with every resource).
    return hashlib.blake2b(body, digest_size=8).hexdigest()


def versioned(type_url: str, name: str, message: Message) -> VersionedResource:
    body = message.SerializeToString(deterministic=True)
    return VersionedResource(type_url, name, content_version(body), body)
