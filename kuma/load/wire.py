"""What the driver, the workers and the reference share: type numbers and the config digest.

A sidecar's config is summarised as (XOR of one 64-bit hash per held (type, name, version),
number held). XOR makes the digest incremental (a resource replaced is hashed out and in) and
independent of arrival order, so a worker checks "holds exactly what it should" in O(1) per
resource, and the driver ships two integers per sidecar instead of its whole config.
"""

from __future__ import annotations

import hashlib

from kuma.xds import types

#: Small numbers for type URLs (probe keys and digests stay compact).
TYPES: tuple[str, ...] = (types.CLUSTER, types.ENDPOINT, types.LISTENER, types.ROUTE, types.SECRET)
TYPE_INDEX: dict[str, int] = {url: i for i, url in enumerate(TYPES)}
CDS, EDS, LDS = (TYPE_INDEX[types.CLUSTER], TYPE_INDEX[types.ENDPOINT], TYPE_INDEX[types.LISTENER])
SDS = TYPE_INDEX[types.SECRET]

#: (XOR of entry hashes, entry count).
Digest = tuple[int, int]


def entry_hash(type_index: int, name: str, version: str) -> int:
    data = f"{type_index}\0{name}\0{version}".encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def digest_of(config: dict[int, dict[str, str]]) -> Digest:
    """The digest of a whole config: type index → name → version."""
    value = 0
    count = 0
    for type_index, by_name in config.items():
        for name, version in by_name.items():
            value ^= entry_hash(type_index, name, version)
            count += 1
    return value, count
