"""kuma-cp in zone and global mode as a user runs it, driven with kumactl: who authors what
(Kuma's refusals word for word), the zone tag on Dataplanes, no default mesh on a federated
zone (its meshes come from global)."""

from __future__ import annotations

from pathlib import Path

from kuma.multizone import GLOBAL_READ_ONLY_MESSAGE, ZONE_READ_ONLY_MESSAGE

from .helpers import Kumactl, running_cp

MESH = "type: Mesh\nname: demo\n"
DATAPLANE = """\
type: Dataplane
mesh: default
name: web-01
networking:
  address: 127.0.0.1
  inbound:
  - port: 18080
    servicePort: 8080
    tags:
      kuma.io/service: web
"""


def test_a_federated_zone(tmp_path: Path) -> None:
    folder = tmp_path / "resources"
    folder.mkdir()
    # What KDS would have brought from global: the mesh (written here as a file).
    (folder / "mesh-default.yaml").write_text("type: Mesh\nname: default\n")
    env = {
        "KUMA_MODE": "zone",
        "KUMA_MULTIZONE_ZONE_NAME": "zone-1",
        "KUMA_MULTIZONE_ZONE_GLOBAL_ADDRESS": "grpcs://127.0.0.1:5685",
        "KUMA_STORE_TYPE": "directory",
        "KUMA_STORE_DIRECTORY_PATH": str(folder),
    }
    with running_cp(env) as cp:
        assert "mode=zone" in cp.process.wait_for_line("kuma-cp is ready")
        kumactl = Kumactl(cp.url)
        refused = kumactl("apply", "-f", "-", stdin=MESH)
        assert refused.code != 0
        assert ZONE_READ_ONLY_MESSAGE in refused.err
        # Global authors meshes and their defaults: none were created here.
        assert "created the default mesh" not in cp.process.output()
        assert not list(folder.glob("meshtimeout-*"))

        kumactl.ok("apply", "-f", "-", stdin=DATAPLANE)
        shown = kumactl.ok("get", "dataplane", "web-01", "-o", "yaml")
        assert "kuma.io/zone: zone-1" in shown
        assert "kuma.io/origin: zone" in shown

        forged = kumactl("apply", "-f", "-", stdin=DATAPLANE + "      kuma.io/zone: zone-2\n")
        assert forged.code != 0
        assert 'networking.inbound[0].tags["kuma.io/zone"]' in forged.err
        assert "kuma.io/zone: zone-1" in kumactl.ok("get", "dataplane", "web-01", "-o", "yaml")


def test_a_global() -> None:
    with running_cp({"KUMA_MODE": "global"}) as cp:
        kumactl = Kumactl(cp.url)
        refused = kumactl("apply", "-f", "-", stdin=DATAPLANE)
        assert refused.code != 0
        assert GLOBAL_READ_ONLY_MESSAGE in refused.err
        kumactl.ok("apply", "-f", "-", stdin=MESH)
        assert "demo" in kumactl.ok("get", "meshes")
