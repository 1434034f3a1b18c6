"""kumactl get / delete round trips, error messages and exit codes, the console script, and
the admin token."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kuma.resources.policy import POLICY_KINDS

from .helpers import Kumactl, run_process, running_cp

TOKEN = "cli-admin-token"
DATAPLANE = (
    "type: Dataplane\nmesh: {mesh}\nname: {name}\nnetworking:\n  address: 10.0.0.1\n"
    "  inbound:\n  - port: 8080\n    tags: {{kuma.io/service: web}}\n"
)


@pytest.fixture(scope="module")
def kumactl() -> Iterator[Kumactl]:
    with running_cp({"KUMA_API_SERVER_AUTH_ADMIN_TOKEN": TOKEN}) as cp:
        yield Kumactl(cp.url)


def test_apply_get_delete_round_trip(kumactl: Kumactl) -> None:
    kumactl.ok("apply", "-f", "-", stdin="type: Mesh\nname: round\n")
    kumactl.ok("apply", "-f", "-", stdin=DATAPLANE.format(mesh="round", name="dp-1"))
    kumactl.ok(
        "apply",
        "-f",
        "-",
        stdin="type: ZoneEgress\nname: ze-9\nnetworking: {address: 10.0.0.2, port: 10002}\n",
    )
    assert "dp-1" in kumactl.ok("get", "dataplane", "dp-1", "-m", "round")
    assert "ze-9" in kumactl.ok("get", "zoneegress", "ze-9")

    refused = kumactl("delete", "mesh", "round")
    assert refused.code == 1
    assert refused.err == (
        "Error: Could not delete a resource (Resource is not valid)\n"
        "* mesh: unable to delete mesh, there are still some dataplanes attached\n"
    )
    assert kumactl.ok("delete", "dataplane", "dp-1", "-m", "round") == 'deleted Dataplane "dp-1"\n'
    assert kumactl.ok("delete", "mesh", "round") == 'deleted Mesh "round"\n'
    assert kumactl.ok("delete", "zone-egress", "ze-9") == 'deleted ZoneEgress "ze-9"\n'

    gone = kumactl("get", "dataplane", "dp-1", "-m", "round")
    assert (gone.code, gone.err) == (1, "Error: No resources found in round mesh\n")
    assert kumactl("get", "mesh", "round").err == "Error: No resources found\n"
    again = kumactl("delete", "dataplane", "dp-1")
    assert (again.code, again.err) == (1, 'Error: there is no Dataplane with name "dp-1"\n')


def test_unknown_delete_type(kumactl: Kumactl) -> None:
    result = kumactl("delete", "router", "x")
    assert result.code == 1
    policies = sorted(kind.singular for kind in POLICY_KINDS.values())
    allowed = [
        "dataplane",
        "external-service",
        "global-secret",
        "mesh",
        "meshgateway",
        "secret",
        "zone",
        "zone-egress",
        "zone-ingress",
    ]
    allowed += ["zoneegress", "zoneingress", *policies]
    assert result.err == (
        f"Error: unknown TYPE: router. Allowed values: {', '.join(sorted(allowed))}\n"
    )


def test_apply_refuses_the_vip_allocation(kumactl: Kumactl) -> None:
    # kuma-cp's VIP allocator owns MeshVips (kuma/cp/vips.py); the API does not serve it.
    result = kumactl("apply", "-f", "-", stdin="type: MeshVips\nname: default\n")
    assert (result.code, result.err) == (
        1,
        "Error: MeshVips is managed by kuma-cp and cannot be applied\n",
    )


def test_listing_a_missing_mesh(kumactl: Kumactl) -> None:
    result = kumactl("get", "dataplanes", "-m", "ghost")
    assert result.code == 1
    assert result.err == "Error: failed to list Dataplane: Failed to retrieve Mesh (Not found)\n"
    inspect = kumactl("inspect", "dataplanes", "-m", "ghost")
    assert inspect.err.startswith("Error: failed to list DataplaneOverview: Failed to retrieve")


def test_inspect_follows_every_page(kumactl: Kumactl) -> None:
    kumactl.ok("apply", "-f", "-", stdin="type: Mesh\nname: many\n")
    documents = "---\n".join(DATAPLANE.format(mesh="many", name=f"dp-{i:03}") for i in range(105))
    kumactl.ok("apply", "-f", "-", stdin=documents)
    out = json.loads(kumactl.ok("inspect", "dataplanes", "-m", "many", "-o", "json"))
    assert (out["total"], len(out["items"]), out["next"]) == (105, 105, None)
    table = kumactl.ok("inspect", "dataplanes", "-m", "many")
    assert len(table.splitlines()) == 106


def test_the_admin_token(kumactl: Kumactl) -> None:
    """From loopback no token is needed; a token that is sent is checked."""
    wrong = Kumactl(kumactl.env["KUMACTL_API_SERVER"], {"KUMACTL_AUTH_TOKEN": "nope"})
    result = wrong("apply", "-f", "-", stdin="type: Mesh\nname: tokened\n")
    assert (result.code, result.err) == (1, "Error: Unauthenticated (invalid admin token)\n")
    right = Kumactl(kumactl.env["KUMACTL_API_SERVER"], {"KUMACTL_AUTH_TOKEN": TOKEN})
    right.ok("apply", "-f", "-", stdin="type: Mesh\nname: tokened\n")


def test_the_admin_token_from_the_config_file(kumactl: Kumactl, tmp_path: Path) -> None:
    config = tmp_path / "config"
    url = kumactl.env["KUMACTL_API_SERVER"]
    config.write_text(
        "currentContext: local\ncontexts:\n- name: local\n  controlPlane: cp\n"
        f"controlPlanes:\n- name: cp\n  coordinates:\n    apiServer:\n      url: {url}\n"
        f"      authType: tokens\n      authConf:\n        token: {TOKEN}\n"
    )
    # No KUMACTL_API_SERVER: the address and the token both come from the file.
    from_file = Kumactl(url, {"KUMACTL_CONFIG": str(config)})
    del from_file.env["KUMACTL_API_SERVER"]
    from_file.ok("apply", "-f", "-", stdin="type: Mesh\nname: from-config\n")
    # A token that is sent is checked on every request, reads included.
    config.write_text(config.read_text().replace(TOKEN, "stale"))
    assert from_file("get", "meshes").err == (
        "Error: failed to list Mesh: Unauthenticated (invalid admin token)\n"
    )
    assert from_file("delete", "mesh", "from-config").err.startswith("Error: Unauthenticated")


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_unreachable_server() -> None:
    port = _closed_port()
    result = Kumactl(f"http://127.0.0.1:{port}")("get", "meshes")
    assert result.code == 1
    assert result.err.startswith(
        f"Error: could not connect to the Control Plane API Server at http://127.0.0.1:{port}: "
    )


def test_exit_codes_as_a_process(kumactl: Kumactl) -> None:
    env = dict(kumactl.env)
    ok = run_process("get", "meshes", "-o", "json", env=env)
    assert ok.code == 0
    assert "default" in [m["name"] for m in json.loads(ok.out)["items"]]
    missing = run_process("get", "mesh", "nope", env=env)
    assert (missing.code, missing.out, missing.err) == (1, "", "Error: No resources found\n")
    usage = run_process("get", "dataplane", env=env)
    assert usage.code == 2
    assert "the following arguments are required: NAME" in usage.err
    assert run_process("frobnicate", env=env).code == 2
    assert run_process("get", "meshes", "-o", "xml", env=env).code == 2
    # --api-server wins over the environment, before or after the command.
    elsewhere = {**env, "KUMACTL_API_SERVER": f"http://127.0.0.1:{_closed_port()}"}
    url = env["KUMACTL_API_SERVER"]
    after = run_process("get", "meshes", "-o", "json", "--api-server", url, env=elsewhere)
    before = run_process("--api-server", url, "get", "meshes", "-o", "json", env=elsewhere)
    assert after.code == before.code == 0
    assert after.out == before.out


def test_the_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "kumactl"
    done = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0
    assert done.stdout.startswith("kumactl ")


def test_secrets_get_apply_delete_with_kuma_columns(kumactl: Kumactl) -> None:
    kumactl.ok(
        "apply", "-f", "-", stdin="type: Secret\nmesh: default\nname: sec-1\ndata: dGVzdA==\n"
    )
    kumactl.ok("apply", "-f", "-", stdin="type: GlobalSecret\nname: gsec-1\ndata: dGVzdDI=\n")
    listed = kumactl.ok("get", "secrets")
    assert listed.splitlines()[0].split() == ["MESH", "NAME", "AGE"]
    # The mesh's dataplane-token signing key (created with the mesh) is listed too.
    assert [line.split()[:2] for line in listed.splitlines()[1:]] == [
        ["default", "dataplane-token-signing-key-default-1"],
        ["default", "sec-1"],
    ]
    one = kumactl.ok("get", "global-secret", "gsec-1")
    assert one.splitlines()[0].split() == ["NAME", "AGE"]
    assert "gsec-1" in one
    assert "dGVzdA" not in listed + one + kumactl.ok("get", "global-secrets")
    assert "data: dGVzdA==" in kumactl.ok("get", "secret", "sec-1", "-o", "yaml")
    assert kumactl.ok("delete", "secret", "sec-1") == 'deleted Secret "sec-1"\n'
    assert kumactl.ok("delete", "global-secret", "gsec-1") == 'deleted GlobalSecret "gsec-1"\n'


def test_what_kuma_users_type_by_habit(kumactl: Kumactl) -> None:
    """Issue 17 (README): kumactl version, kumactl inspect dataplane NAME (and its served
    Envoy configuration), kuma-dp version."""
    version = kumactl.ok("version")
    assert version.startswith("Client: Kuma ")
    assert "\nServer: Kuma " in version
    kumactl.ok("apply", "-f", "-", stdin="type: Mesh\nname: habits\n")
    kumactl.ok("apply", "-f", "-", stdin=DATAPLANE.format(mesh="habits", name="dp-7"))
    # The default inspection, as Kuma's: the policies that apply (the mesh's defaults here).
    policies = kumactl.ok("inspect", "dataplane", "dp-7", "-m", "habits")
    lines = policies.splitlines()
    assert lines[0] == "Dataplane dp-7 (mesh habits)"
    assert "MeshTimeout" in lines
    assert "    everything: mesh-timeout-all-habits" in lines
    assert any(line.startswith("  from, inbound port") for line in lines)
    assert '"connectionTimeout":"5s"' in policies
    rules = json.loads(kumactl.ok("inspect", "dataplane", "dp-7", "-m", "habits", "-o", "json"))
    assert "MeshRetry" in {kind["type"] for kind in rules["rules"]}
    table = kumactl.ok("inspect", "dataplane", "dp-7", "-m", "habits", "--type", "status")
    assert table.splitlines()[0].split()[:2] == ["MESH", "NAME"]
    assert "dp-7" in table.splitlines()[1]
    overview = json.loads(
        kumactl.ok("inspect", "dataplane", "dp-7", "-m", "habits", "--type=status", "-o", "json")
    )
    assert overview["name"] == "dp-7"
    dump = json.loads(kumactl.ok("inspect", "dataplane", "dp-7", "-m", "habits", "--config-dump"))
    assert dump
    missing = kumactl("inspect", "dataplane", "ghost", "-m", "habits")
    assert missing.code == 1
    assert missing.err.startswith("Error: failed to get the policies")
    missing = kumactl("inspect", "dataplane", "ghost", "-m", "habits", "--type=status")
    assert missing.err.startswith("Error: failed to get DataplaneOverview")
    dp = subprocess.run(
        [sys.executable, "-m", "kuma.dp.cli", "version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (dp.returncode, dp.stdout.startswith("Kuma ")) == (0, True)
