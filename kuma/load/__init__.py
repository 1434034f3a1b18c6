"""kuma-load: a load harness for delta-xDS control planes, with simulated Envoy sidecars.

``mesh`` and ``stores`` make and write a synthetic mesh; ``reference`` computes what each
sidecar should hold; ``sidecar`` and ``worker`` simulate Envoy 1.40 on the wire from worker
processes; ``session`` and ``scenarios`` drive a run; ``baseline`` is the snapshot-per-proxy
control plane measured side by side; ``cli`` is the ``kuma-load`` command.
"""

from __future__ import annotations
