"""The GUI at 10,000 proxies: how fast the Dataplane list's first page is served and shown.

An in-process control plane (memory store, real engine, real insights with half of the
proxies connected through the insight tracker, the GUI, the REST API on a free port) serves
Debian's headless chromium. Measured:

* server: the JSON of the first page (50 rows) unfiltered, filtered by name, by status (the
  filter that reads every proxy's insight), the mesh summary and the overview; median of
  ``--runs`` requests each, and the bytes of each answer (a page never ships 10,000 rows);
* browser: from navigation start to the first page of rows in the DOM (the page's own
  ``performance.mark("dataplanes-rendered")``), over ``--loads`` fresh loads of
  ``/gui/#/meshes/default``.

Run: ``python benchmarks/bench_gui.py`` (needs chromium and chromium-driver from Debian).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from anyio.from_thread import start_blocking_portal

from kuma.api import ApiServer, ApiSettings, build_app
from kuma.gui import Gui
from kuma.insights import Insights, MemoryInsightStore
from kuma.inspect import served_config_routes
from kuma.resources import Dataplane, Inbound, Mesh, Networking, Outbound
from kuma.store.memory import MemoryStore
from kuma.xds.engine import Engine
from kuma.xds.server.observer import ObserverGroup

SERVICES = 100


def dataplane(index: int) -> Dataplane:
    service = f"svc-{index % SERVICES:03}"
    return Dataplane(
        name=f"dp-{index:05}",
        mesh="default",
        networking=Networking(
            address=f"10.{index // 65536}.{index // 256 % 256}.{index % 256}",
            inbound=(
                Inbound(port=8080, tags={"kuma.io/service": service, "version": f"v{index % 3}"}),
            ),
            outbound=(Outbound(port=10001, tags={"kuma.io/service": "svc-000"}),),
        ),
    )


@asynccontextmanager
async def control_plane(proxies: int) -> AsyncIterator[int]:
    store = MemoryStore()
    await store.create(Mesh(name="default"))
    for index in range(proxies):
        await store.create(dataplane(index))
    insights = Insights(MemoryInsightStore(), flush_interval=10.0)
    engine = Engine()
    gui = Gui(store, insights)
    # Every other proxy connected, reported to both observers as the ADS server does.
    observers = ObserverGroup([insights.tracker, gui.streams])
    for index in range(0, proxies, 2):
        observers.on_stream_open(index, f"default.dp-{index:05}", "delta", "1.32.0")
    async with anyio.create_task_group() as tg:
        tg.start_soon(engine.run, store)
        await engine.wait_synced()
        await tg.start(gui.run)
        routes = [*served_config_routes(store, engine), *gui.routes()]
        app = build_app(store, ApiSettings(), insights, routes)
        async with ApiServer(app, "127.0.0.1", 0) as server:
            yield server.port
        tg.cancel_scope.cancel()


def timed_get(url: str) -> tuple[float, int]:
    started = time.perf_counter()
    with urllib.request.urlopen(url) as reply:
        body = reply.read()
    return time.perf_counter() - started, len(body)


def server_numbers(base: str, runs: int) -> None:
    cases = {
        "first page (50 of all)": "/gui/api/meshes/default/dataplanes",
        "first page, name filter": "/gui/api/meshes/default/dataplanes?name=dp-09",
        "first page, tag filter": "/gui/api/meshes/default/dataplanes?tag=kuma.io/service:svc-042",
        "first page, status=offline": "/gui/api/meshes/default/dataplanes?status=offline",
        "mesh summary": "/gui/api/meshes/default",
        "services (50 of 100)": "/gui/api/meshes/default/services",
        "overview": "/gui/api/overview",
    }
    for label, path in cases.items():
        samples = [timed_get(base + path) for _ in range(runs)]
        times = sorted(s for s, _ in samples)
        print(
            f"server  {label:28} median {statistics.median(times) * 1000:7.1f} ms"
            f"  max {times[-1] * 1000:7.1f} ms  {samples[0][1]:>7} bytes"
        )


def browser_numbers(base: str, loads: int) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.wait import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,900"):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        shown: list[float] = []
        for _ in range(loads):
            driver.get("about:blank")
            driver.get(base + "/gui/#/meshes/default")
            mark = WebDriverWait(driver, 30, poll_frequency=0.02).until(
                lambda d: d.execute_script(
                    "const m = performance.getEntriesByName('dataplanes-rendered');"
                    "return m.length ? m[0].startTime : null;"
                )
            )
            shown.append(float(mark))
            rows = driver.execute_script(
                "return document.querySelectorAll('tr[data-dataplane]').length;"
            )
            size = driver.execute_script(
                "const r = performance.getEntriesByType('resource')"
                ".filter(e => e.name.includes('/dataplanes?'));"
                "return r.length ? r[0].encodedBodySize : null;"
            )
        print(
            f"browser navigation start -> first page of rows shown: median "
            f"{statistics.median(shown):.0f} ms, max {max(shown):.0f} ms over {loads} loads "
            f"({rows} rows in the DOM, {size} bytes of Dataplane JSON)"
        )
    finally:
        driver.quit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--proxies", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--loads", type=int, default=5)
    args = parser.parse_args()
    print(f"{args.proxies} Dataplanes in mesh default, half online; load {os.getloadavg()[0]:.2f}")
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(
        control_plane(args.proxies)
    ) as port:  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        server_numbers(base, args.runs)
        browser_numbers(base, args.loads)


if __name__ == "__main__":
    main()
