"""Every admin page and the API docs work under the Content-Security-Policy, console clean."""

import re

import pytest
from django.contrib import admin
from django.urls import reverse
from playwright.sync_api import expect

from tests.system.browser.conftest import log_in
from tests.system.browser.test_admin_screens import admin_pages, seed_site

pytestmark = pytest.mark.browser

# Every page's own violations, whatever the console says: a listener installed before any of
# the page's scripts runs (Playwright's init scripts are not subject to the page's policy).
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__violations.push(`${event.violatedDirective} blocked ${event.blockedURI || "inline"}`
    + ` at ${event.sourceFile}:${event.lineNumber}`);
});
"""


def every_page(site: dict) -> list[tuple[str, str]]:
    """The admin's pages, the history of each record shown, every other list, the password pages."""
    admin.autodiscover()  # the model admins, registered when the URLconf is first read
    pages = admin_pages(site)
    shown = {url for _, url in pages}
    # Every list the admin registers (the sign-in locks, the second factor's devices, the audit
    # trail's changes, …), also those added after this test was written.
    lists = [
        (f"{model._meta.app_label}-{model._meta.model_name}", url)
        for model in admin.site._registry
        if (url := reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist"))
        not in shown
    ]
    histories = [
        (f"{name}-history", url.removesuffix("change/") + "history/")
        for name, url in pages
        if re.search(r"/\d+/change/$", url)
    ]
    return [
        *pages,
        *lists,
        *histories,
        ("password-change", reverse("admin:password_change")),
        ("user-password", reverse("admin:auth_user_password_change", args=[site["reader"].pk])),
    ]


class Console:
    """What the browser reported while pages loaded: console errors, uncaught errors, violations."""

    def __init__(self, page):
        self.problems: list[str] = []
        self.where = "start"
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"{self.where}: {error}"))

    def _console(self, message) -> None:
        if message.type in ("error", "warning") or "Content Security Policy" in message.text:
            self.problems.append(f"{self.where}: console {message.type}: {message.text}")


def visit(page, console: Console, name: str, url: str) -> None:
    console.where = name
    response = page.goto(url)
    assert response.status == 200, f"{name}: {url} answered {response.status}"
    policy = response.headers.get("content-security-policy", "")
    assert "default-src 'self'" in policy, f"{name}: no policy ({policy!r})"
    assert "'unsafe-inline'" not in policy
    page.wait_for_load_state("networkidle")
    for violation in page.evaluate("window.__violations"):
        console.problems.append(f"{name}: {violation}")


def test_every_admin_page_and_the_api_docs_load_without_a_policy_violation_or_error(
    browser_page, admin_account, fake_pagerduty
):
    page = browser_page
    page.context.add_init_script(RECORD_VIOLATIONS)
    console = Console(page)
    site = seed_site(fake_pagerduty)

    visit(page, console, "login", reverse("admin:login"))
    log_in(page)
    for name, url in every_page(site):
        visit(page, console, name, url)
    # The test alert's script runs on the change page: its button answers in place.
    visit(
        page,
        console,
        "destination-test-alert",
        reverse("admin:destinations_destination_change", args=[site["destination"].pk]),
    )
    page.get_by_role("button", name="Send test alert").click()
    expect(page.locator("#test-alert-result")).to_contain_text("Test alert")
    # Swagger UI drew the API from its own static files: its scripts ran under the policy.
    visit(page, console, "api-docs", "/api/v1/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Detection")
    expect(page.locator(".opblock-summary-path").first).to_contain_text("/api/v1/detection-runs")

    assert console.problems == []
