"""The GUI in a real headless chromium against a real kuma-cp and real kuma-dp sidecars.

kuma-cp runs on a directory store in a temporary folder; the Dataplanes are files in it, so a
stopped sidecar's Dataplane stays (offline) instead of being deregistered. Every page change
below happens without a reload: a marker set on ``window`` must survive until the end.
Screenshots go to $KUMA_GUI_SCREENSHOTS (the README's come from there) or the test's folder.
"""

from __future__ import annotations

import json
import re
import socket
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver

from tests.fixtures.envoy import free_ports, write_atomically
from tests.fixtures.processes import ManagedProcess, kuma_cp

from .browser import browser, screenshot, wait_until

__all__ = ["browser"]

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

START = 30.0

DATAPLANE = """\
type: Dataplane
mesh: default
name: {name}
networking:
  address: 127.0.0.1
  admin:
    port: {admin}
  inbound:
  - port: {inbound}
    servicePort: {app}
    tags:
      kuma.io/service: {service}
      kuma.io/protocol: http
      version: v1
{outbound}"""
OUTBOUND = """\
  outbound:
  - port: {port}
    tags:
      kuma.io/service: backend
"""


class Cluster:
    """kuma-cp on a directory store, and kuma-dp sidecars for Dataplanes defined in it."""

    def __init__(self, folder: Path) -> None:
        self.store = folder / "store"
        self.store.mkdir()
        self.sidecars: dict[str, ManagedProcess] = {}
        env = {
            "KUMA_STORE_TYPE": "directory",
            "KUMA_STORE_DIRECTORY_PATH": str(self.store),
            "KUMA_DP_SERVER_INTERFACE": "127.0.0.1",
            "KUMA_DP_SERVER_PORT": "0",
            "KUMA_API_SERVER_HTTP_PORT": "0",
        }
        self.cp = kuma_cp(None, env=env)
        line = self.cp.wait_for_line("kuma-cp is ready", timeout=START)
        dp_port = re.search(r"dp_port=(\d+)", line)
        api_port = re.search(r"api_port=(\d+)", line)
        assert dp_port, line
        assert api_port, line
        self.dp_port = int(dp_port.group(1))
        self.api = f"http://127.0.0.1:{api_port.group(1)}"
        self.gui = f"{self.api}/gui/"
        self.folder = folder
        assert self.cp.work_dir is not None
        self.ca_file = self.cp.work_dir / "kuma-cp.crt"

    def define(
        self, name: str, service: str, *, outbound: bool = False, inbound_port: int = 0
    ) -> None:
        admin, inbound, app, out = free_ports(4)
        inbound = inbound_port or inbound
        text = DATAPLANE.format(
            name=name,
            admin=admin,
            inbound=inbound,
            app=app,
            service=service,
            outbound=OUTBOUND.format(port=out) if outbound else "",
        )
        write_atomically(self.store / f"{name}.yaml", text)

    def token(self, name: str) -> Path:
        """A dataplane token for ``name`` from the REST API (loopback callers are admins)."""
        body = json.dumps({"mesh": "default", "name": name, "validFor": "1h"}).encode()
        request = urllib.request.Request(f"{self.api}/tokens/dataplane", data=body, method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            path = self.folder / f"{name}.token"
            path.write_bytes(response.read())
        return path

    def start_sidecar(self, name: str) -> None:
        argv = [sys.executable, "-m", "kuma.dp.cli", "run", "--cp-address",
                f"https://127.0.0.1:{self.dp_port}", "--name", name, "--mesh", "default",
                "--ca-cert-file", str(self.ca_file),
                "--drain-time", "1s", "--concurrency", "1",
                "--dataplane-token-file", str(self.token(name))]  # fmt: skip
        self.sidecars[name] = ManagedProcess(argv)

    def stop_sidecar(self, name: str) -> None:
        process = self.sidecars.pop(name)
        assert process.stop() == 0, process.output()

    def close(self) -> list[str]:
        problems = []
        for name in list(self.sidecars):
            process = self.sidecars.pop(name)
            if process.stop() not in (0, None):
                problems.append(f"kuma-dp {name} exited {process.proc.returncode}")
        if self.cp.stop() != 0:
            problems.append("kuma-cp did not stop cleanly:\n" + self.cp.output())
        return problems


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    running = Cluster(tmp_path_factory.mktemp("gui"))
    try:
        running.define("backend-01", "backend")
        running.define("web-01", "web", outbound=True)
        for name in ("backend-01", "web-01"):
            running.start_sidecar(name)
        yield running
    finally:
        problems = running.close()
    assert not problems, problems


def row_status(driver: WebDriver, name: str) -> str | None:
    """The status of the Dataplane's row, None when it is not listed."""
    for _ in range(50):
        try:
            rows = driver.find_elements(By.CSS_SELECTOR, f'tr[data-dataplane="{name}"]')
            return rows[0].get_attribute("data-status") if rows else None
        except StaleElementReferenceException:
            continue  # re-rendered between the find and the read: read again
    raise AssertionError(f"the row of {name} never stood still")


def text_of(driver: WebDriver, css: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def open_first_cluster(driver: WebDriver) -> bool:
    driver.find_element(By.CSS_SELECTOR, '#served [data-type="Cluster"] summary').send_keys(
        Keys.ENTER
    )
    return True


def set_hidden(driver: WebDriver, *, hidden: bool) -> None:
    """What the browser does when the tab goes to the background (headless tabs never do)."""
    driver.execute_script(
        "Object.defineProperty(document, 'hidden', {value: arguments[0], configurable: true});"
        "document.dispatchEvent(new Event('visibilitychange'));",
        hidden,
    )


def mark_page(driver: WebDriver) -> None:
    driver.execute_script("window.__sameDocument = true;")


def assert_not_reloaded(driver: WebDriver) -> None:
    assert driver.execute_script("return window.__sameDocument === true;"), "the page reloaded"


def test_sidecars_show_online_then_offline_live_and_a_dataplane_page(
    browser: WebDriver, cluster: Cluster, tmp_path: Path
) -> None:
    browser.get(cluster.gui + "#/meshes/default")
    mark_page(browser)
    wait_until(browser, lambda d: row_status(d, "backend-01") == "online", "backend-01 online")
    wait_until(browser, lambda d: row_status(d, "web-01") == "online", "web-01 online")
    assert "Live" in browser.find_element(By.ID, "live").text
    badge = browser.find_element(By.CSS_SELECTOR, 'tr[data-dataplane="web-01"] .badge')
    assert badge.text == "Online"  # the colour always comes with its word
    # kuma-cp created the mesh with Kuma's default policies: listed by kind.
    wait_until(
        browser, lambda d: "mesh-retry-all-default" in text_of(d, "#policies"), "the policies"
    )
    screenshot(browser, "mesh", tmp_path)

    cluster.stop_sidecar("backend-01")
    wait_until(browser, lambda d: row_status(d, "backend-01") == "offline", "backend-01 offline")
    assert row_status(browser, "web-01") == "online"
    wait_until(
        browser,
        lambda d: d.find_element(By.ID, "mesh-offline").text.startswith("1"),
        "the mesh's offline count",
    )
    assert_not_reloaded(browser)

    # Keyboard only: the Dataplane's name is a link; Enter follows it.
    link = browser.find_element(By.CSS_SELECTOR, 'tr[data-dataplane="web-01"] a')
    link.send_keys(Keys.ENTER)
    wait_until(
        browser,
        lambda d: d.find_elements(By.CSS_SELECTOR, '#dp-status [data-status="online"]'),
        "the Dataplane page",
    )
    wait_until(browser, lambda d: "ACKed" in text_of(d, "tr.subscription"), "the subscription")
    wait_until(browser, lambda d: text_of(d, '#served [data-type="Listener"]'), "listeners")
    wait_until(
        browser, lambda d: "backend" in text_of(d, '#served [data-type="Cluster"]'), "clusters"
    )
    # Details open from the keyboard too, and stay open when the page re-reads.
    wait_until(
        browser,
        lambda d: d.find_elements(By.CSS_SELECTOR, 'tr.policy-rule[data-kind="MeshRetry"]'),
        "the policies that apply to web-01",
    )
    screenshot(browser, "dataplane", tmp_path)
    wait_until(browser, open_first_cluster, "a cluster's summary")
    wait_until(browser, lambda d: '"edsClusterConfig"' in text_of(d, "#served"), "a cluster's JSON")
    wait_until(browser, lambda d: "name: web-01" in text_of(d, "#dp-yaml"), "the YAML")
    screenshot(browser, "dataplane-config", tmp_path)

    browser.find_element(By.CSS_SELECTOR, '[data-nav="overview"]').click()
    wait_until(
        browser,
        lambda d: d.find_elements(By.CSS_SELECTOR, 'tr[data-mesh="default"]'),
        "the overview",
    )
    assert_not_reloaded(browser)
    screenshot(browser, "overview", tmp_path)


def test_a_dropped_file_appears_live_and_a_broken_file_is_a_store_problem(
    browser: WebDriver, cluster: Cluster, tmp_path: Path
) -> None:
    browser.get(cluster.gui + "#/meshes/default")
    mark_page(browser)
    wait_until(browser, lambda d: row_status(d, "web-01") == "online", "web-01 online")
    assert row_status(browser, "backend-02") is None
    cluster.define("backend-02", "backend")
    wait_until(browser, lambda d: row_status(d, "backend-02") == "offline", "backend-02 listed")

    # The filter runs on the server: only matching rows come back.
    # "/" jumps to the name filter from anywhere on the page; typing there filters.
    browser.find_element(By.TAG_NAME, "body").send_keys("/")
    box = browser.switch_to.active_element
    assert box.get_attribute("id") == "filter-name"
    box.send_keys("backend-0")
    wait_until(browser, lambda d: row_status(d, "web-01") is None, "web-01 filtered out")
    assert row_status(browser, "backend-02") == "offline"
    count = text_of(browser, "#dp-count")
    assert count.startswith("Showing 1"), count
    assert count.endswith("of 2 Dataplanes (3 in the mesh)"), count
    assert "backend-0" in browser.current_url  # the filter is kept in the address

    # A hidden tab lets go of its stream; shown again, it reconnects and reads afresh.
    set_hidden(browser, hidden=True)
    wait_until(browser, lambda d: "Paused" in text_of(d, "#live"), "the paused indicator")
    cluster.define("backend-03", "backend")
    set_hidden(browser, hidden=False)
    wait_until(browser, lambda d: "Live" in text_of(d, "#live"), "the stream back")
    wait_until(browser, lambda d: row_status(d, "backend-03") == "offline", "backend-03 listed")

    browser.find_element(By.CSS_SELECTOR, '[data-nav="overview"]').click()
    wait_until(browser, lambda d: d.find_elements(By.ID, "store-healthy"), "a healthy store")
    broken = cluster.store / "broken.yaml"
    write_atomically(broken, "type: Dataplane\nmesh: default\nname: broken\nnetworking: [\n")
    wait_until(
        browser,
        lambda d: str(broken) in text_of(d, "#store-problems .problem"),
        "the broken file as a store problem",
    )
    screenshot(browser, "store-problem", tmp_path)
    broken.unlink()
    wait_until(browser, lambda d: d.find_elements(By.ID, "store-healthy"), "the problem cleared")

    browser.find_element(By.CSS_SELECTOR, '[data-nav="propagation"]').click()
    # backend-02 changed backend's endpoints, which web-01's sidecar uses.
    wait_until(
        browser,
        lambda d: any(
            "Dataplane default/backend-02" in row.text and "default.web-01" in row.text
            for row in d.find_elements(By.CSS_SELECTOR, "tr[data-change]")
        ),
        "backend-02's change reaching web-01 in the propagation view",
    )
    assert_not_reloaded(browser)
    screenshot(browser, "propagation", tmp_path)


def test_a_rejected_config_shows_envoys_error_text(
    browser: WebDriver, cluster: Cluster, tmp_path: Path
) -> None:
    # The inbound's port is held by this test: Envoy cannot bind the listener and NACKs it,
    # naming the address (all on loopback; nothing leaves the machine).
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        cluster.define("clash-01", "clash", inbound_port=holder.getsockname()[1])
        cluster.start_sidecar("clash-01")
        browser.get(cluster.gui + "#/meshes/default/dataplanes/clash-01")
        mark_page(browser)
        wait_until(
            browser,
            lambda d: "lds" in text_of(d, "#nacks") and "cannot bind" in text_of(d, "#nacks"),
            "Envoy's NACK text on the Dataplane page",
        )
        assert str(holder.getsockname()[1]) in text_of(browser, "#nacks")
        wait_until(browser, lambda d: "NACKed" in text_of(d, "tr.subscription strong"), "NACKs")
        assert_not_reloaded(browser)
        screenshot(browser, "nack", tmp_path)
        cluster.stop_sidecar("clash-01")
