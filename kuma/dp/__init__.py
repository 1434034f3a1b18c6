"""``kuma-dp``: renders the Dataplane, fetches the bootstrap from kuma-cp, runs Envoy.

:mod:`.dataplane` (template, variables, checks), :mod:`.client` (``POST /bootstrap`` with
retries), :mod:`.envoy` (find, version, start), :mod:`.run` (the lifecycle), :mod:`.cli`.
"""

from __future__ import annotations
