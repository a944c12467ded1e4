"""Browser tests: Playwright driving the OS's Chromium (/usr/bin/chromium, installed by run.sh;
`playwright install` is never run) against the REAL hub process.

Fixtures:
- `hub_process`: the hub as `python -m hub` (simulator.services.HubProcess) on a temporary SQLite
  file and a free port, with its admin token; a `HubClient` too (register halls, devices, ingest).
  Make accounts with `tests.fixtures.accounts.create_user(hub_process, login, role, …)`.
- `browser`: one Chromium for the session; skipped, with the reason, if /usr/bin/chromium is missing.
- `page`: a fresh context (own cookies) and page per test, 1280x800 unless the test is marked
  `@pytest.mark.viewport(width, height)` (a phone: 390, 844). `page.base_url` is the hub.
- `shot(name)`: a full-page screenshot of `page`, kept as a test artifact in
  test-artifacts/browser/<module>.<test>/NN-name.png (git-ignored; `HCP_TEST_ARTIFACTS` moves
  test-artifacts/ elsewhere); a failing test gets `failed.png` too. Each test's folder is emptied
  when it starts and kept after the run (tests/README.md, "Artifacts").
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from simulator.services import HubProcess
from tests.fixtures.hub import ADMIN_TOKEN

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("HCP_TEST_ARTIFACTS") or ROOT / "test-artifacts") / "browser"
_SAFE = re.compile(r"[^\w.-]+")  # what may stay in an artifact's file name
DEFAULT_TIMEOUT_MS = 15_000  # one action or wait; a loaded 2-core machine needs slack


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "viewport(width, height): the browser page's viewport size")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    report = yield
    if report.when == "call" and report.failed:
        item.stash[_FAILED] = True
    return report


_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def browser():
    """Chromium for one test. Not shared across tests: Playwright's sync API keeps an asyncio loop
    running in the thread while it is started, so any later test in the same process that runs a
    loop of its own (asyncio.run, anyio) would fail with "another loop is running" (seen with
    pytest-xdist, where a worker runs browser and hub tests in turn)."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: run ./run.sh setup (it installs Debian's chromium)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def hub_process(tmp_path: Path) -> Iterator[HubProcess]:
    """The real hub process (not the in-process app): what a browser reaches in production."""
    hub = HubProcess(tmp_path / "hub", admin_token=ADMIN_TOKEN).start()
    try:
        yield hub
        code = hub.proc.poll() if hub.proc is not None else None
        if code is not None:
            pytest.fail(f"hub died with exit status {code} during the test:\n{hub.log_text()}")
    finally:
        hub.close()


def artifact_dir(item: pytest.Item) -> Path:
    """A test's artifacts folder: test-artifacts/browser/<module>.<test name>/."""
    name = _SAFE.sub("_", item.nodeid.split("::", 1)[-1])[:120]
    return ARTIFACTS / f"{Path(item.fspath).stem}.{name}"


@pytest.fixture
def page(request: pytest.FixtureRequest, browser, hub_process: HubProcess):
    marker = request.node.get_closest_marker("viewport")
    width, height = marker.args if marker else (1280, 800)
    context = browser.new_context(base_url=hub_process.url, viewport={"width": width, "height": height},
                                  locale="zh-CN")
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    the_page = context.new_page()
    folder = artifact_dir(request.node)
    shutil.rmtree(folder, ignore_errors=True)
    the_page.artifact_dir = folder  # type: ignore[attr-defined]
    try:
        yield the_page
    finally:
        if request.node.stash.get(_FAILED, False):
            folder.mkdir(parents=True, exist_ok=True)
            try:
                the_page.screenshot(path=str(folder / "failed.png"), full_page=True)
            except Exception:  # the page may be what broke
                pass
        context.close()


@pytest.fixture
def shot(page) -> Callable[[str], Path]:
    """`shot("home")`: a full-page screenshot now, numbered in the order taken; its path."""
    taken: list[Path] = []

    def take(name: str) -> Path:
        folder: Path = page.artifact_dir
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{len(taken) + 1:02d}-{_SAFE.sub('_', name)}.png"
        page.screenshot(path=str(path), full_page=True)
        taken.append(path)
        return path
    return take
