"""Signing in to the admin: the locked page, and the second factor (enrolment, codes, recovery).

django-axes counts failed passwords and calls `locked_response`; django-otp keeps the devices
and marks a session verified. What they leave to the project is written here: the two-step
flow after the password (enrol a TOTP app, or give its code), the pages, and the reset.
"""

import logging
from base64 import b32encode
from datetime import timedelta
from urllib.parse import urlencode

import django_otp
import segno
from django import forms
from django.conf import settings
from django.contrib import admin
from django.contrib.auth import REDIRECT_FIELD_NAME, logout
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import path, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_POST
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

logger = logging.getLogger(__name__)

# Ten single-use codes, as most services give; each is 8 base32 characters (django-otp's).
RECOVERY_CODE_COUNT = 10
TOTP_DEVICE_NAME = "Authenticator app"
TOTP_DIGITS = 6  # TOTPDevice's default, which every authenticator app shows
WRONG_APP_CODE = "That code is not right. Enter the 6 digits the app shows now."
WRONG_CODE = "That code is not right. Enter the 6 digits the app shows now, or a recovery code."
THROTTLED = "Too many wrong codes. Wait a few seconds, then enter the code the app shows now."
RECOVERY_DEVICE_NAME = "Recovery codes"


# --- the locked page ------------------------------------------------------------------------


def locked_response(request: HttpRequest, original_response=None, credentials=None):
    """The page axes answers with (AXES_LOCKOUT_CALLABLE) once a user and address are locked."""
    from axes.helpers import get_client_username

    context = {
        **_page_context(request, title="Sign-in locked"),
        "username": get_client_username(request, credentials) or "",
        "failure_limit": settings.AXES_FAILURE_LIMIT,
        "cooloff": _duration(settings.AXES_COOLOFF_TIME),
    }
    return render(
        request,
        "admin/signin/locked.html",
        context,
        status=settings.AXES_HTTP_RESPONSE_CODE,
    )


def _duration(delta: timedelta) -> str:
    """'15 minutes', '1 hour', '30 seconds': how long a lock lasts, as a person says it."""
    seconds = int(delta.total_seconds())
    for unit, size in (("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


# --- who still owes a second factor ---------------------------------------------------------


def needs_second_factor(request: HttpRequest) -> bool:
    """True for active staff signed in with a password but not yet verified by a device."""
    user = request.user
    if not (settings.ADMIN_MFA_REQUIRED and user.is_active and user.is_staff):
        return False
    # OTPMiddleware gives request.user is_verified(); the user that LoginView has just signed in
    # replaces that object, and has not been verified by anything yet.
    is_verified = getattr(user, "is_verified", None)
    return not (is_verified and is_verified())


def after_password(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """The admin's login answer, or the second-factor step when the password was only half."""
    if not needs_second_factor(request):
        return response
    return HttpResponseRedirect(_second_factor_url(request.user, _next_url(request)))


def _second_factor_url(user, next_url: str) -> str:
    has_device = TOTPDevice.objects.filter(user=user, confirmed=True).exists()
    step = "admin:signin_verify" if has_device else "admin:signin_enrol"
    return f"{reverse(step)}?{urlencode({REDIRECT_FIELD_NAME: next_url})}"


def _next_url(request: HttpRequest) -> str:
    """Where to go once verified: the page asked for, if it is ours, else the admin's index."""
    wanted = request.POST.get(REDIRECT_FIELD_NAME) or request.GET.get(REDIRECT_FIELD_NAME, "")
    if url_has_allowed_host_and_scheme(
        wanted, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return wanted
    return reverse("admin:index")


# --- the pages ------------------------------------------------------------------------------


class CodeForm(forms.Form):
    code = forms.CharField(
        label="Code",
        max_length=16,
        strip=True,
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "autofocus": True, "inputmode": "text"}
        ),
    )

    def clean_code(self) -> str:
        # Apps show "123 456"; recovery codes are stored in lower case.
        return "".join(self.cleaned_data["code"].split()).lower()


def _page_context(request: HttpRequest, *, title: str) -> dict:
    # The admin's frame without its navigation: nothing beyond this page is open yet.
    return {
        **admin.site.each_context(request),
        "title": title,
        "available_apps": [],
        "is_nav_sidebar_enabled": False,
    }


def _second_factor_page(view):
    """Only a signed-in user who still owes a second factor sees these pages; never cached."""

    @never_cache
    @csrf_protect
    def page(request: HttpRequest) -> HttpResponse:
        if not request.user.is_authenticated:
            return HttpResponseRedirect(reverse("admin:login"))
        if not needs_second_factor(request):
            return HttpResponseRedirect(_next_url(request))
        return view(request)

    return page


@_second_factor_page
def enrol_view(request: HttpRequest) -> HttpResponse:
    """Set up an authenticator app: its secret as text and a QR code, confirmed by one code."""
    user = request.user
    if TOTPDevice.objects.filter(user=user, confirmed=True).exists():
        return HttpResponseRedirect(_second_factor_url(user, _next_url(request)))
    device = _pending_app(user)
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if _throttled(device):
            form.add_error("code", THROTTLED)
        elif not device.verify_token(form.cleaned_data["code"]):
            form.add_error("code", WRONG_APP_CODE)
        else:
            return _enrolled(request, device)
    context = {
        **_page_context(request, title="Set up a second factor"),
        "form": form,
        "secret": _grouped(b32encode(device.bin_key).decode()),
        "qr_svg": _qr_svg(device.config_url),
        "next_url": _next_url(request),
    }
    return render(request, "admin/signin/enrol.html", context)


def _pending_app(user) -> TOTPDevice:
    # One pending device per user, kept until confirmed, so a reload shows the same secret.
    pending = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("pk").first()
    return pending or TOTPDevice.objects.create(user=user, name=TOTP_DEVICE_NAME, confirmed=False)


def _enrolled(request: HttpRequest, device: TOTPDevice) -> HttpResponse:
    """Confirm the app, verify this session, and show the recovery codes (the only time)."""
    codes = _confirm(device)
    django_otp.login(request, device)
    logger.info("second factor enrolled user=%s", request.user.get_username())
    context = {
        **_page_context(request, title="Save your recovery codes"),
        "codes": codes,
        "next_url": _next_url(request),
    }
    return render(request, "admin/signin/recovery_codes.html", context)


@_second_factor_page
def verify_view(request: HttpRequest) -> HttpResponse:
    """Ask for the app's code (or a recovery code) after the password."""
    user = request.user
    if not TOTPDevice.objects.filter(user=user, confirmed=True).exists():
        return HttpResponseRedirect(_second_factor_url(user, _next_url(request)))
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        code = form.cleaned_data["code"]
        device = _device_for(user, code)
        # Each wrong code makes django-otp wait longer before it checks that device again (1 s,
        # 2 s, 4 s, ...): a right code in that wait is refused too, so the message says to wait.
        throttled = _throttled(device)
        if device is not None and device.verify_token(code):
            django_otp.login(request, device)
            if isinstance(device, StaticDevice):
                logger.warning(
                    "recovery code used user=%s codes_left=%d",
                    user.get_username(),
                    device.token_set.count(),
                )
            return HttpResponseRedirect(_next_url(request))
        logger.warning("second factor refused user=%s", user.get_username())
        form.add_error("code", THROTTLED if throttled else WRONG_CODE)
    context = {
        **_page_context(request, title="Enter your code"),
        "form": form,
        "next_url": _next_url(request),
    }
    return render(request, "admin/signin/verify.html", context)


@never_cache
@require_POST
@csrf_protect
def sign_out_view(request: HttpRequest) -> HttpResponse:
    """Sign out half-way (the admin's own logout is behind the second factor too)."""
    logout(request)
    return HttpResponseRedirect(reverse("admin:login"))


def urls() -> list:
    """The second-factor pages, added to the admin site's URLs ahead of its own."""
    return [
        path("signin/enrol/", enrol_view, name="signin_enrol"),
        path("signin/verify/", verify_view, name="signin_verify"),
        path("signin/sign-out/", sign_out_view, name="signin_sign_out"),
    ]


@transaction.atomic
def _confirm(device: TOTPDevice) -> list[str]:
    """Confirm the app and issue fresh recovery codes, replacing any earlier ones."""
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    StaticDevice.objects.filter(user=device.user).delete()
    recovery = StaticDevice.objects.create(
        user=device.user, name=RECOVERY_DEVICE_NAME, confirmed=True
    )
    codes = [StaticToken.random_token() for _ in range(RECOVERY_CODE_COUNT)]
    StaticToken.objects.bulk_create(StaticToken(device=recovery, token=code) for code in codes)
    return codes


def _device_for(user, code: str):
    """The app for a 6-digit code, the recovery codes for anything else (they are 8 letters)."""
    # Asking only the one device, unlike django_otp.match_token, keeps a recovery code from
    # counting as a wrong app code (and so slowing the app down).
    model = TOTPDevice if code.isdigit() and len(code) == TOTP_DIGITS else StaticDevice
    return model.objects.filter(user=user, confirmed=True).first()


def _throttled(device) -> bool:
    return device is not None and not device.verify_is_allowed()[0]


def _grouped(secret: str) -> str:
    # Groups of four are easier to type into an app by hand.
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def _qr_svg(config_url: str) -> SafeString:
    # Inline SVG made here: no request leaves the page, and it has no script or style attribute.
    svg = segno.make(config_url, error="m").svg_inline(scale=4, title="Authenticator app QR code")
    return mark_safe(svg)  # noqa: S308  segno's markup: the URL is drawn as modules, not text


# --- the operator's reset -------------------------------------------------------------------


@transaction.atomic
def reset_second_factor(*, user) -> int:
    """Remove every device of `user`, so the next sign-in enrols again; returns how many."""
    removed = 0
    for device in django_otp.devices_for_user(user, confirmed=None):
        device.delete()
        removed += 1
    logger.warning("second factor reset user=%s devices=%d", user.get_username(), removed)
    return removed
