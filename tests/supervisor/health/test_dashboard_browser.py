"""The dashboard in a real headless Chromium (Debian's chromium + chromium-driver, driven by
Selenium): it renders the running tree and shows a breaker opening within 2 s.

Needs no display. Without the browser or Selenium the test skips with the reason, except
under REQUIRE_SERVICES=1 (CI), where it fails. The screenshot is saved under the folder
the test prints; with ACTORVISOR_UPDATE_SCREENSHOT=1 it also replaces
docs/images/dashboard.png (the picture on docs/observability.md).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from actors import ServiceError
from supervisor.fallback import llm_router
from tests.supervisor.health.dashboard_tree import HELLO, open_breaker, running_tree

pytestmark = pytest.mark.anyio

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1400,900",
)
DOCS_IMAGE = Path(__file__).resolve().parents[3] / "docs" / "images" / "dashboard.png"
ARTIFACTS = Path(tempfile.gettempdir()) / "actorvisor-artifacts"


def _missing() -> list[str]:
    missing = []
    if importlib.util.find_spec("selenium") is None:
        missing.append("selenium (pip install -e '.[test]')")
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (os.path.exists(path) or shutil.which(os.path.basename(path))):
            missing.append(f"{path} (apt-get install {package})")
    return missing


@pytest.fixture
def chrome(tmp_path: Path) -> Iterator[Any]:
    """A headless Chromium with a fresh profile, quit afterwards."""
    missing = _missing()
    if missing:
        reason = "the dashboard browser test needs " + ", ".join(missing)
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    options = webdriver.ChromeOptions()
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    options.binary_location = CHROMIUM
    driver = webdriver.Chrome(service=DriverService(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: Any, seconds: float, condition: Any) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds, poll_frequency=0.05).until(condition)


# Read in one script run: the page replaces the table at every poll, so elements found
# by one WebDriver call may be gone by the next.
BREAKER = """return document.querySelector(
    'tr[data-path="agent/llm"] [data-field="breaker"]')?.getAttribute("data-state") ?? null"""
PATHS = """return Array.from(document.querySelectorAll("#tree-body tr[data-path]"),
    (row) => row.getAttribute("data-path"))"""


CONCURRENCY = """const cell = document.querySelector(
    'tr[data-path="agent/mini"] [data-field="concurrency"]');
    return cell ? [cell.getAttribute("data-limit"), cell.textContent] : null"""


def _concurrency(driver: Any) -> list[str] | None:
    shown: list[str] | None = driver.execute_script(CONCURRENCY)
    return shown


def _breaker_state(driver: Any) -> str | None:
    state: str | None = driver.execute_script(BREAKER)
    return state


def _rendered_paths(driver: Any) -> list[str]:
    paths: list[str] = driver.execute_script(PATHS)
    return paths


async def test_dashboard_renders_the_tree_and_shows_a_breaker_open_within_2_s(
    chrome: Any, tmp_path: Path
) -> None:
    """The page renders every node of the tree; an opened breaker shows within 2 s."""
    async with running_tree() as run, anyio.create_task_group() as traffic:
        run.server.control.latency = 0.02
        run.server.control.jitter = 0.03
        router = llm_router(
            run.sup.ref("llm"), run.sup.ref("mini"), name="agent/llm", breaker=run.llm.breaker
        )

        async def agent() -> None:
            while True:  # a steady load through the router, falling back once llm is open
                await router.call(HELLO, timeout=5)
                await anyio.sleep(0.05)

        traffic.start_soon(agent)
        await anyio.to_thread.run_sync(chrome.get, f"{run.url}/dashboard")
        await anyio.to_thread.run_sync(
            _wait, chrome, 10, lambda d: "agent/tools/echo" in _rendered_paths(d)
        )
        paths = await anyio.to_thread.run_sync(_rendered_paths, chrome)
        assert paths == ["agent", "agent/llm", "agent/mini", "agent/tools", "agent/tools/echo"]
        assert await anyio.to_thread.run_sync(_breaker_state, chrome) == "closed"

        await anyio.sleep(1.0)  # a second of latency history for the sparklines
        await open_breaker(run)
        assert run.llm.breaker is not None
        assert run.llm.breaker.state.value == "open"
        opened = time.monotonic()
        await anyio.to_thread.run_sync(_wait, chrome, 2, lambda d: _breaker_state(d) == "open")
        shown_after = time.monotonic() - opened
        await anyio.sleep(1.5)  # the fallback serves; the feed and figures move on
        folder = ARTIFACTS / "dashboard"
        folder.mkdir(parents=True, exist_ok=True)
        shot = folder / "dashboard.png"
        await anyio.to_thread.run_sync(chrome.save_screenshot, str(shot))
        traffic.cancel_scope.cancel()
    print(f"dashboard screenshot: {shot}")
    if os.environ.get("ACTORVISOR_UPDATE_SCREENSHOT") == "1":
        DOCS_IMAGE.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, DOCS_IMAGE)
    assert shown_after < 2.0
    assert shot.stat().st_size > 10_000


async def test_the_page_fetches_nothing_but_its_own_origin(chrome: Any) -> None:
    """Every resource the page loads comes from the health app itself."""
    async with running_tree() as run:
        await anyio.to_thread.run_sync(chrome.get, f"{run.url}/dashboard")
        await anyio.to_thread.run_sync(
            _wait, chrome, 10, lambda d: d.find_element("id", "health").text == "healthy"
        )
        urls = await anyio.to_thread.run_sync(
            chrome.execute_script,
            "return performance.getEntriesByType('resource').map(e => e.name)",
        )
    assert urls
    assert all(url.startswith(run.url + "/") for url in urls)
    assert {url.rsplit("/", 1)[-1].split("?")[0] for url in urls} >= {
        "dashboard.js",
        "dashboard.css",
        "tree",
    }


async def test_dashboard_shows_an_adaptive_limit_backing_off_within_2_s(chrome: Any) -> None:
    """The adaptive service's row shows slots in use over its limit and its bounds; the
    halved limit after a 503 shows within 2 s."""
    async with running_tree() as run:
        await anyio.to_thread.run_sync(chrome.get, f"{run.url}/dashboard")
        await anyio.to_thread.run_sync(_wait, chrome, 10, lambda d: _concurrency(d) is not None)
        before = await anyio.to_thread.run_sync(_concurrency, chrome)
        run.mini_server.control.down = True
        with pytest.raises(ServiceError):
            await run.sup.ref("mini").call(HELLO, timeout=5)
        dropped = time.monotonic()
        await anyio.to_thread.run_sync(
            _wait, chrome, 2, lambda d: (_concurrency(d) or [""])[0] == "4"
        )
        shown_after = time.monotonic() - dropped
        after = await anyio.to_thread.run_sync(_concurrency, chrome)
    assert before == ["8", "0/8 (2\u201316)"]
    assert after == ["4", "0/4 (2\u201316)"]
    assert shown_after < 2.0
