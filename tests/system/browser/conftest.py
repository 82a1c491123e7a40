"""Browser fixtures: the system Chromium through Playwright, a live admin, a worker, screenshots.

Playwright's own browser download does not work here, so the tests drive the `chromium` found on
PATH (`.ci/run` installs Debian's package when it is missing). Without one, or when it cannot
start, every browser test is skipped with the reason, and the run's summary repeats it.
"""

import contextlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
# The laptop screen the admin must fit without sideways scrolling (issue 13).
VIEWPORT = {"width": 1366, "height": 768}
# Long enough for a slow CI machine, short enough that a missing element fails fast.
TIMEOUT_MS = 10_000

ADMIN_USERNAME = "oncall-admin"
ADMIN_PASSWORD = "a-long-browser-test-password"

# How Playwright quotes the browser's own stderr in a launch error.
_BROWSER_STDERR = re.compile(r"^\[pid=\d+\]\[err\] (.*)$")
_skipped = pytest.StashKey[str]()
_reports = pytest.StashKey[dict[str, pytest.TestReport]]()


@contextlib.contextmanager
def _async_unsafe_allowed() -> Iterator[None]:
    # Playwright's sync API keeps an asyncio loop running on the test thread while it is started,
    # and Django refuses ORM calls from a thread with a running loop (it cannot tell it from an
    # async view). The tests talk to the database synchronously, so the guard is lifted, but only
    # while the browser is up: the rest of the suite keeps it.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def _why(error: Exception) -> str:
    """The launch error's first line and what the browser itself wrote to stderr, if anything."""
    lines = str(error).strip().splitlines()
    said = [match.group(1) for line in lines if (match := _BROWSER_STDERR.match(line))]
    # The last few lines: a crash usually ends with its reason.
    return "; ".join([*lines[:1], *dict.fromkeys(said[-3:])]) or type(error).__name__


def _skip(config: pytest.Config, reason: str):
    config.stash[_skipped] = reason
    pytest.skip(reason)


@pytest.fixture(scope="package")
def chromium(pytestconfig: pytest.Config):
    """The system Chromium, launched once for the browser tests, or a skip that says why not."""
    executable = next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)
    if executable is None:
        _skip(
            pytestconfig,
            "Chromium not available: no `chromium` on PATH "
            "(install Debian's chromium package, as .ci/run does)",
        )
    from playwright.sync_api import Error, sync_playwright

    with _async_unsafe_allowed():
        playwright = sync_playwright().start()
        try:
            try:
                browser = playwright.chromium.launch(
                    executable_path=executable, args=CHROMIUM_ARGS, headless=True
                )
            except Error as error:
                _skip(
                    pytestconfig,
                    f"Chromium not available: {executable} did not start: {_why(error)}",
                )
            yield browser
            browser.close()
        finally:
            playwright.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    """Keep each phase's report on the test, so the page fixture knows when the test failed."""
    report = yield
    item.stash.setdefault(_reports, {})[report.when] = report
    return report


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    """Say at the end of the run why the browser tests were skipped, even without -rs."""
    reason = config.stash.get(_skipped, None)
    if reason:
        terminalreporter.write_sep("-", "browser tests skipped", yellow=True)
        terminalreporter.write_line(reason)


@pytest.fixture
def screenshots_dir(output_path: str) -> Path:
    """This test's folder under the run's output folder (pytest-playwright's --output)."""
    folder = Path(output_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def browser_page(chromium, live_server, screenshots_dir: Path, request: pytest.FixtureRequest):
    """A fresh browser tab (own cookies) pointed at the live server."""
    context = chromium.new_context(base_url=live_server.url, viewport=VIEWPORT)
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    yield tab
    failed = any(report.failed for report in request.node.stash.get(_reports, {}).values())
    if failed:
        # What the browser showed when the test failed, next to the test's other screenshots.
        with contextlib.suppress(Exception):
            tab.screenshot(path=screenshots_dir / "failure.png", full_page=True)
    context.close()


@pytest.fixture
def screenshot(browser_page, screenshots_dir: Path):
    """Save the whole page as <name>.png in the test's output folder and return its path."""

    def take(name: str) -> Path:
        path = screenshots_dir / f"{name}.png"
        browser_page.screenshot(path=path, full_page=True)
        return path

    return take


@pytest.fixture
def admin_account(transactional_db):
    """A superuser made with the ORM; the tests log in through the real login form."""
    from django.contrib.auth.models import User

    return User.objects.create_superuser(ADMIN_USERNAME, "oncall@example.com", ADMIN_PASSWORD)


def log_in(page, *, next_path: str = "/admin/") -> None:
    """Log in through the admin's login form, as a person would."""
    page.goto(f"/admin/login/?next={next_path}")
    page.get_by_label("Username").fill(ADMIN_USERNAME)
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"**{next_path}")


@pytest.fixture
def admin_page(browser_page, admin_account):
    """The browser tab, logged in as the admin."""
    log_in(browser_page)
    return browser_page


@pytest.fixture
def delivery_worker(live_server, fake_pagerduty):
    """The delivery worker in a background thread, as `deliver_alerts` runs beside the web."""
    from tests.support.worker_process import worker_thread

    with worker_thread(concurrency=2, name="browser-test-worker") as worker:
        yield worker
