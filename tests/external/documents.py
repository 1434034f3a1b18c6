"""Documents the ExternalService tests share."""

from __future__ import annotations

#: A TLS ExternalService whose CA is the mesh Secret ``httpbin-ca``.
HTTPBIN = """\
type: ExternalService
mesh: default
name: httpbin
networking:
  address: httpbin.org:443
  tls: {enabled: true, caCert: {secret: httpbin-ca}}
tags: {kuma.io/service: httpbin, kuma.io/protocol: http}
"""
