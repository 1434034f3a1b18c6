"""Debian's chromium, headless, driven by Selenium through Debian's chromedriver.

Both come from the distribution (scripts/test.sh installs ``chromium`` and
``chromium-driver`` when missing); nothing is downloaded at run time: the driver's path is
given, so Selenium's own driver manager never runs.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait

T = TypeVar("T")

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT = 30.0  # generous: CI shares two cores with Envoys and kuma-cp


def browser_missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if shutil.which(path) is None:
            return (
                f"{path} is not installed (scripts/test.sh installs chromium and chromium-driver)"
            )
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    missing = browser_missing()
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in a container: chromium's sandbox needs user namespaces
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,900",
        "--no-first-run",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_until(driver: WebDriver, check: Callable[[WebDriver], T], what: str) -> T:
    """``check`` until it returns something truthy, or fail naming ``what``."""
    # A live page re-renders under the test's feet: an element gone stale means "look again".
    waiter = WebDriverWait(
        driver, WAIT, poll_frequency=0.05, ignored_exceptions=(StaleElementReferenceException,)
    )
    result: T = waiter.until(check, f"waiting for {what}")
    return result


def screenshot(driver: WebDriver, name: str, fallback: Path) -> Path:
    """Save a PNG under $KUMA_GUI_SCREENSHOTS (the README's pictures come from there) or the
    test's own folder."""
    folder = Path(os.environ.get("KUMA_GUI_SCREENSHOTS", fallback))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    assert driver.save_screenshot(str(path)), f"no screenshot of {name}"
    return path
