"""kumactl get / inspect against a kuma-cp holding tests/cli/data/fleet.yaml, compared with
golden files (see helpers.py for the normalization of times)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .helpers import DATA, Kumactl, assert_golden, normalize, running_cp


@pytest.fixture(scope="module")
def kumactl() -> Iterator[Kumactl]:
    with running_cp() as cp:
        client = Kumactl(cp.url)
        client.ok("apply", "-f", str(DATA / "fleet.yaml"))
        yield client


@pytest.mark.parametrize(
    ("golden", "argv"),
    [
        ("get-meshes.txt", ["get", "meshes"]),
        ("get-meshes.yaml", ["get", "meshes", "-o", "yaml"]),
        ("get-meshes.json", ["get", "meshes", "-o", "json"]),
        ("get-mesh.yaml", ["get", "mesh", "golden", "-o", "yaml"]),
        ("get-dataplanes.txt", ["get", "dataplanes", "-m", "golden"]),
        ("get-dataplanes.yaml", ["get", "dataplanes", "--mesh", "golden", "-o", "yaml"]),
        ("get-dataplanes.json", ["get", "dataplanes", "-m", "golden", "--output", "json"]),
        ("get-dataplanes-page.txt", ["get", "dataplanes", "-m", "golden", "--size", "2"]),
        ("get-dataplane.txt", ["get", "dataplane", "web-2", "-m", "golden"]),
        ("get-dataplane.yaml", ["get", "dataplane", "web-2", "-m", "golden", "-o", "yaml"]),
        ("get-dataplane.json", ["get", "dataplane", "web-2", "-m", "golden", "-o", "json"]),
        ("get-zoneingresses.txt", ["get", "zoneingresses"]),
        ("get-zoneingresses.txt", ["get", "zone-ingresses"]),
        ("get-zoneingress.json", ["get", "zone-ingress", "zi-1", "-o", "json"]),
        ("get-zoneegresses.txt", ["get", "zoneegresses"]),
        ("get-zoneegress.yaml", ["get", "zoneegress", "ze-1", "-o", "yaml"]),
        ("get-external-services.txt", ["get", "external-services", "-m", "golden"]),
        ("get-external-services.json", ["get", "external-services", "-m", "golden", "-o", "json"]),
        (
            "get-external-services-page.txt",
            ["get", "external-services", "-m", "golden", "--size", "1"],
        ),
        (
            "get-external-service.yaml",
            ["get", "external-service", "example", "-m", "golden", "-o", "yaml"],
        ),
        ("get-meshgateways.txt", ["get", "meshgateways", "-m", "golden"]),
        ("get-meshgateway.yaml", ["get", "meshgateway", "edge", "-m", "golden", "-o", "yaml"]),
    ],
)
def test_get(kumactl: Kumactl, golden: str, argv: list[str]) -> None:
    output = kumactl.ok(*argv)
    assert_golden(golden, normalize(output, age_column=golden.endswith(".txt")))


@pytest.mark.parametrize(
    ("golden", "argv"),
    [
        ("inspect-dataplanes.txt", ["inspect", "dataplanes", "-m", "golden"]),
        ("inspect-dataplanes.json", ["inspect", "dataplanes", "-m", "golden", "-o", "json"]),
        ("inspect-dataplanes.yaml", ["inspect", "dataplanes", "-m", "golden", "-o", "yaml"]),
        (
            "inspect-dataplanes-tag.txt",
            ["inspect", "dataplanes", "-m", "golden", "--tag", "kuma.io/service=web"],
        ),
        (
            "inspect-dataplanes-tags.txt",
            ["inspect", "dataplanes", "-m", "golden", "--tag", "kuma.io/service=web,version=v2"],
        ),
        ("inspect-dataplanes-gateway.txt", ["inspect", "dataplanes", "-m", "golden", "--gateway"]),
    ],
)
def test_inspect(kumactl: Kumactl, golden: str, argv: list[str]) -> None:
    # Nothing has connected: every cell is deterministic (Offline, never, 0, -).
    assert_golden(golden, normalize(kumactl.ok(*argv)))


def test_empty_lists(kumactl: Kumactl) -> None:
    assert kumactl.ok("get", "dataplanes", "-m", "plain") == "MESH   NAME   TAGS   ADDRESS   AGE\n"
    assert kumactl.ok("get", "dataplanes", "-m", "plain", "-o", "json") == (
        '{\n  "total": 0,\n  "items": [],\n  "next": null\n}\n'
    )
    assert kumactl.ok("inspect", "dataplanes", "-m", "plain").startswith("MESH   NAME   TAGS")


def test_the_page_footer_offset_gets_the_next_page(kumactl: Kumactl) -> None:
    first = kumactl.ok("get", "dataplanes", "-m", "golden", "--size", "3")
    footer = first.strip().splitlines()[-1]
    offset = footer.removeprefix("Rerun command with --offset=").split(" ")[0]
    rest = kumactl.ok("get", "dataplanes", "-m", "golden", "--size", "3", "--offset", offset)
    assert [line.split()[1] for line in rest.splitlines()[1:]] == ["web-2"]
