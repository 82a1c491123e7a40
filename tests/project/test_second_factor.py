"""With ADMIN_MFA_REQUIRED, staff give a TOTP code (or a recovery code) after the password."""

import re

import pytest
from django.contrib import admin
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.urls import URLResolver, reverse
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from destinations.checks import check_admin_mfa_required
from tests.support.signing_in import (
    STAFF_PASSWORD,
    make_staff,
    sign_in,
    totp_code,
    visible_text,
)

pytestmark = pytest.mark.django_db

ENROL = "/admin/signin/enrol/"
VERIFY = "/admin/signin/verify/"
# The pages a user who has given only the password may see: the login form and these steps.
OPEN_BEFORE_VERIFIED = {"login", "signin_enrol", "signin_verify", "signin_sign_out"}

mfa_required = override_settings(ADMIN_MFA_REQUIRED=True)


@pytest.fixture
def staff(db):
    return make_staff()


@pytest.fixture
def enrolled(staff):
    """The staff user with a confirmed authenticator app and its recovery codes."""
    from destinations.admin.signin import _confirm

    device = TOTPDevice.objects.create(user=staff, name="Authenticator app", confirmed=False)
    codes = _confirm(device)
    return device, codes


def every_admin_url() -> list[str]:
    """Each URL the admin site serves, with a placeholder wherever it takes an argument."""
    placeholders = {"app_label": "destinations", "url": "no-such-page/"}
    found = []

    def walk(patterns, prefix):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif pattern.name is None:
                # Unnamed: the admin's catch-all, and each model's old /<id>/ redirect.
                route = str(pattern.pattern)
                if "(?P<url>" in route:
                    found.append(reverse("admin:index") + placeholders["url"])
                else:
                    found.append(reverse("admin:index") + prefix + re.sub(r"<[^>]+>", "1", route))
            elif pattern.name not in OPEN_BEFORE_VERIFIED:
                arguments = pattern.pattern.regex.groupindex
                kwargs = {name: placeholders.get(name, "1") for name in arguments}
                found.append(reverse(f"admin:{pattern.name}", kwargs=kwargs))

    admin.autodiscover()  # the model admins, registered when the URLconf is first read
    walk(admin.site.get_urls(), "")
    return found


def enrol(client, staff):
    """Sign in, follow to the enrolment page, confirm with the app's code: the codes page."""
    assert sign_in(client, STAFF_PASSWORD)["Location"].startswith(ENROL)
    client.get(ENROL)
    device = TOTPDevice.objects.get(user=staff)
    return client.post(ENROL, {"code": totp_code(device), "next": "/admin/"})


@mfa_required
def test_staff_without_a_device_go_from_the_password_to_enrolment(client, staff):
    answer = sign_in(client, STAFF_PASSWORD, next_url="/admin/destinations/destination/")

    assert answer.status_code == 302
    assert answer["Location"] == ENROL + "?next=%2Fadmin%2Fdestinations%2Fdestination%2F"
    page = client.get(answer["Location"])
    text = visible_text(page)
    device = TOTPDevice.objects.get(user=staff, confirmed=False)
    from base64 import b32encode

    secret = b32encode(device.bin_key).decode()
    assert "Set up a second factor" in text
    assert secret[:4] + " " + secret[4:8] in text  # the key, in groups of four to type
    html = page.content.decode()
    assert re.search(r"<svg[^>]*class=\"segno\"", html)  # the QR code, drawn in the page
    # Nothing a Content-Security-Policy without 'unsafe-inline' would block.
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)
    assert ' style="' not in html


@mfa_required
def test_every_admin_url_is_refused_until_the_second_factor(client, staff):
    sign_in(client, STAFF_PASSWORD)
    urls = every_admin_url()
    assert reverse("admin:destinations_health") in urls
    assert reverse("admin:autocomplete") in urls
    assert reverse("admin:destinations_destination_changelist") in urls
    assert reverse("admin:destinations_destination_add") in urls
    assert len(urls) > 40

    for url in urls:
        answer = client.get(url)
        assert answer.status_code == 302, url
        assert answer["Location"].startswith(("/admin/login/", "/admin/")), url
        landing = client.get(url, follow=True)
        assert landing.redirect_chain[-1][0].startswith(ENROL), url


@mfa_required
def test_a_code_from_the_app_completes_enrolment_and_the_admin_opens(client, staff):
    done = enrol(client, staff)

    text = visible_text(done)
    assert "they are shown only this once" in text
    codes = StaticToken.objects.filter(device__user=staff).values_list("token", flat=True)
    assert len(codes) == 10 and all(code in text for code in codes)
    assert TOTPDevice.objects.get(user=staff).confirmed
    assert client.get(reverse("admin:index")).status_code == 200
    assert client.get(reverse("admin:destinations_health")).status_code == 200
    # Shown once: the enrolment page does not show them again.
    again = client.get(ENROL)
    assert again.status_code == 302 and codes[0] not in again.content.decode()


@mfa_required
@override_settings(OTP_TOTP_THROTTLE_FACTOR=0)  # a person retyping at once is not throttled here
def test_a_wrong_code_is_refused_with_a_message(client, staff):
    sign_in(client, STAFF_PASSWORD)
    client.get(ENROL)
    device = TOTPDevice.objects.get(user=staff)
    right = totp_code(device)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"

    refused = client.post(ENROL, {"code": wrong, "next": "/admin/"})

    assert refused.status_code == 200
    assert "That code is not right." in visible_text(refused)
    assert not TOTPDevice.objects.get(user=staff).confirmed
    assert client.get(reverse("admin:index")).status_code == 302
    assert client.post(ENROL, {"code": right, "next": "/admin/"}).status_code == 200
    assert client.get(reverse("admin:index")).status_code == 200


@mfa_required
def test_wrong_codes_in_a_row_are_throttled(client, enrolled):
    sign_in(client, STAFF_PASSWORD)
    client.post(VERIFY, {"code": "000000"})

    refused = client.post(VERIFY, {"code": totp_code(enrolled[0]), "next": "/admin/"})

    assert "Too many wrong codes." in visible_text(refused)
    assert client.get(reverse("admin:index")).status_code == 302


@mfa_required
def test_staff_with_a_device_are_asked_for_its_code_after_the_password(client, enrolled):
    device, _ = enrolled
    answer = sign_in(client, STAFF_PASSWORD, next_url="/admin/destinations/delivery/")
    assert answer["Location"] == VERIFY + "?next=%2Fadmin%2Fdestinations%2Fdelivery%2F"
    assert "Enter your code" in visible_text(client.get(answer["Location"]))

    verified = client.post(
        VERIFY, {"code": totp_code(device), "next": "/admin/destinations/delivery/"}
    )

    assert verified.status_code == 302 and verified["Location"] == "/admin/destinations/delivery/"
    assert client.get("/admin/destinations/delivery/").status_code == 200


@mfa_required
def test_a_recovery_code_works_once(client, enrolled):
    _, codes = enrolled
    sign_in(client, STAFF_PASSWORD)
    assert client.post(VERIFY, {"code": codes[0].upper(), "next": "/admin/"}).status_code == 302
    assert client.get(reverse("admin:index")).status_code == 200

    client.post(reverse("admin:logout"))
    sign_in(client, STAFF_PASSWORD)
    refused = client.post(VERIFY, {"code": codes[0], "next": "/admin/"})

    assert refused.status_code == 200 and "code is not right" in visible_text(refused)
    assert client.get(reverse("admin:index")).status_code == 302
    assert StaticToken.objects.filter(device__user=enrolled[0].user).count() == 9


@mfa_required
def test_a_verify_page_never_sends_elsewhere(client, enrolled):
    sign_in(client, STAFF_PASSWORD)
    answer = client.post(
        VERIFY, {"code": totp_code(enrolled[0]), "next": "https://evil.example.com/"}
    )

    assert answer["Location"] == "/admin/"


@mfa_required
def test_a_user_half_way_can_sign_out(client, staff):
    sign_in(client, STAFF_PASSWORD)

    answer = client.post(reverse("admin:signin_sign_out"))

    assert answer["Location"] == reverse("admin:login")
    assert client.get(ENROL)["Location"] == reverse("admin:login")


def test_with_the_setting_off_the_password_alone_opens_the_admin(client, staff):
    answer = sign_in(client, STAFF_PASSWORD)

    assert answer.status_code == 302 and answer["Location"] == "/admin/"
    assert client.get(reverse("admin:index")).status_code == 200


@mfa_required
def test_reset_admin_mfa_makes_the_next_sign_in_enrol_again(client, enrolled, capsys):
    device, _ = enrolled
    sign_in(client, STAFF_PASSWORD)
    client.post(VERIFY, {"code": totp_code(device), "next": "/admin/"})
    assert client.get(reverse("admin:index")).status_code == 200

    call_command("reset_admin_mfa", "oncall")

    assert "Removed 2 second-factor device(s) of 'oncall'" in capsys.readouterr().out
    # The session the old app verified is verified no longer.
    assert client.get(reverse("admin:index")).status_code == 302
    client.post(reverse("admin:signin_sign_out"))
    assert sign_in(client, STAFF_PASSWORD)["Location"].startswith(ENROL)


def test_reset_admin_mfa_names_an_unknown_user(db):
    with pytest.raises(CommandError, match=r"No user is named 'nobody'\."):
        call_command("reset_admin_mfa", "nobody")


def test_check_deploy_warns_while_the_second_factor_is_off(settings):
    settings.ADMIN_MFA_REQUIRED = False
    assert [warning.id for warning in check_admin_mfa_required()] == ["project.W010"]

    settings.ADMIN_MFA_REQUIRED = True
    assert check_admin_mfa_required() == []
