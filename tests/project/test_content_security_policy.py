"""Every answer carries the Content-Security-Policy: pages, JSON, errors and redirects alike."""

import re

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db

POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


def policy_of(response) -> str:
    """The answer's policy without its style nonce, which is new on every page that uses one."""
    return re.sub(r" 'nonce-[^']+'", "", response["Content-Security-Policy"])


@pytest.mark.parametrize(
    "method,url,status",
    [
        ("get", "/admin/login/", 200),
        ("get", "/admin/", 302),  # to the login page
        ("get", "/healthz", 200),
        ("get", "/api/v1/openapi.json", 200),
        ("get", "/api/v1/docs", 200),
        ("post", "/api/v1/detection-runs", 401),
        ("get", "/no-such-page", 404),
    ],
)
def test_every_answer_carries_the_policy(client, method, url, status):
    response = getattr(client, method)(url)

    assert response.status_code == status
    assert policy_of(response) == POLICY


def test_a_pages_own_style_block_carries_the_nonce_its_policy_names(admin_client, destination):
    response = admin_client.get(reverse("admin:destinations_health"))

    [nonce] = re.findall(r"'nonce-([^']+)'", response["Content-Security-Policy"])
    page = response.content.decode()
    assert f'<style nonce="{nonce}">' in page
    # Nothing on the page is styled inline or scripted inline, which the policy refuses.
    assert " style=" not in page
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", page) == []
