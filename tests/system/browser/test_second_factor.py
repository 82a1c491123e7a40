"""Setting up the second factor in a real Chromium, as a new admin does at the first sign-in."""

import re
from base64 import b32decode

import pytest
from django.test import override_settings
from django_otp.plugins.otp_totp.models import TOTPDevice
from playwright.sync_api import expect

from tests.support.signing_in import totp_code
from tests.system.browser.conftest import ADMIN_PASSWORD, ADMIN_USERNAME
from tests.system.browser.test_content_security_policy import RECORD_VIOLATIONS, Console

pytestmark = pytest.mark.browser


@override_settings(ADMIN_MFA_REQUIRED=True)
def test_first_sign_in_sets_up_an_app_shows_recovery_codes_then_opens_the_admin(
    browser_page, admin_account, screenshot
):
    page = browser_page
    page.context.add_init_script(RECORD_VIOLATIONS)
    console = Console(page)
    page.goto("/admin/destinations/destination/")
    page.get_by_label("Username").fill(ADMIN_USERNAME)
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()

    expect(page).to_have_url(re.compile(r"/admin/signin/enrol/\?next="))
    expect(page.locator(".signin-qr svg")).to_be_visible()
    screenshot("01-enrol")
    # The key as typed into an app by hand is the device's key.
    typed = page.locator(".signin-secret").inner_text().replace(" ", "")
    device = TOTPDevice.objects.get(user=admin_account)
    assert b32decode(typed) == device.bin_key

    page.get_by_label("Code").fill(totp_code(device))
    page.get_by_role("button", name="Confirm").click()

    expect(page.get_by_text("they are shown only this once")).to_be_visible()
    expect(page.locator(".signin-recovery-codes li")).to_have_count(10)
    screenshot("02-recovery-codes")
    page.get_by_role("link", name="Continue to the admin").click()
    expect(page).to_have_url(re.compile(r"/admin/destinations/destination/$"))
    # The sign-in, enrolment and recovery-code pages ran under the Content-Security-Policy.
    violations = page.evaluate("window.__violations")
    assert console.problems == [] and violations == []
