"""Multi-zone: which control plane authors which resources, and the ``kuma.io/zone`` tag a
zone control plane puts on its Dataplanes (Kuma's ``pkg/core/managers/apis/dataplane``,
``pkg/api-server/resource_endpoints.go``)."""

from .authoring import (
    GLOBAL_READ_ONLY_MESSAGE,
    ORIGIN_LABEL,
    ZONE_READ_ONLY_MESSAGE,
    Authoring,
)
from .zone_tag import ZONE_TAG, stamp_proxy_zone, stamp_zone

__all__ = [
    "GLOBAL_READ_ONLY_MESSAGE",
    "ORIGIN_LABEL",
    "ZONE_READ_ONLY_MESSAGE",
    "ZONE_TAG",
    "Authoring",
    "stamp_proxy_zone",
    "stamp_zone",
]
