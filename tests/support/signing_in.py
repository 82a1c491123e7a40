"""Signing in through the admin's real login form, and the codes an authenticator app shows.

`client.login(...)` does not work in this project: django-axes' backend needs the request, which
Client.login does not pass (it raises AxesBackendRequestParameterRequired). Use `sign_in` to go
through the form, or `client.force_login(user)` when the sign-in itself is not under test.
"""

import html
import time

from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils.html import strip_tags
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

STAFF_USERNAME = "oncall"
STAFF_PASSWORD = "correct horse battery staple"


def make_staff(username: str = STAFF_USERNAME, password: str = STAFF_PASSWORD) -> User:
    """A superuser, staff like every admin of this product."""
    return User.objects.create_superuser(username, f"{username}@example.com", password)


def sign_in(client: Client, password: str, *, username: str = STAFF_USERNAME, next_url="/admin/"):
    """Post the admin's login form as a browser does; returns the answer, not followed."""
    return client.post(
        reverse("admin:login"),
        {"username": username, "password": password, "next": next_url},
    )


def totp_code(device: TOTPDevice, *, at: float | None = None) -> str:
    """The code an authenticator app holding `device`'s key shows at `at` (default now)."""
    totp = TOTP(device.bin_key, step=device.step, t0=device.t0, digits=device.digits)
    totp.time = time.time() if at is None else at
    return f"{totp.token():0{device.digits}d}"


def visible_text(response) -> str:
    """The words of a page as a reader sees them: no tags, entities decoded, spaces folded."""
    return " ".join(html.unescape(strip_tags(response.content.decode())).split())
