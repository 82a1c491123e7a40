"""Every admin page of a lived-in site at 1366 × 768, saved as a screenshot; the lists fit."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.urls import reverse
from django.utils import timezone

from destinations.models import Delivery, DeliveryKind, DeliveryStatus
from destinations.services import send_test_alert
from detections.models import ApiToken, DetectionRun
from detections.tokens import create_api_token
from tests.support.factories import drain, make_destination, make_detection, record_run
from tests.support.fake_pagerduty import Fault
from tests.support.routing_keys import OTHER_ROUTING_KEY, ROUTING_KEY
from tests.system.browser.conftest import ADMIN_USERNAME, VIEWPORT

pytestmark = pytest.mark.browser

# A third key, which the fake PagerDuty refuses with 400 and the error "Invalid routing key",
# and a fourth, stored 120 days ago.
REFUSED_KEY = "Qw3Er5Ty7Ui9Op1As3Df5Gh7Jk9Lz2Xc"
STALE_KEY = "Mn4Bv6Cx8Za0Sd2Fg4Hj6Kl8Qw0Er2Ty"
SECRET_KEYS = (ROUTING_KEY, OTHER_ROUTING_KEY, REFUSED_KEY, STALE_KEY)

# The pages an admin reads most, which must fit the window without sideways scrolling.
MAIN_LISTS = ("destinations", "deliveries", "detections", "runs", "health")


def seed_site(fake_pagerduty) -> dict:
    """A site an admin has used for a while: every kind of destination, run and delivery."""
    now = timezone.now()
    secops = make_destination(
        "SecOps on-call",
        ROUTING_KEY,
        severity_override="critical",
        component="auth",
        group="prod",
        event_class="security",
        custom_details={"team": "secops", "runbook": "https://wiki.example.com/runbooks/logins"},
    )
    platform = make_destination("Platform on-call (EU)", OTHER_ROUTING_KEY, region="eu")
    refused = make_destination("Payments escalation", REFUSED_KEY, component="payments")
    stale = make_destination("Legacy NOC rota", STALE_KEY, enabled=False)
    stale.routing_key_rotated_at = now - timedelta(days=120)
    stale.save(update_fields=["routing_key_rotated_at"])
    fake_pagerduty.refuse_key(REFUSED_KEY, status=400)

    logins = make_detection("Suspicious Login Attempts", secops, platform, stale)
    travel = make_detection(
        "Impossible travel between two countries within one hour", secops, refused
    )
    make_detection("Quiet detection", enabled=False, severity="LOW")

    # Delivered to both enabled destinations.
    record_run(logins, "sched-2026-0001", match_count=42, ran_at=now - timedelta(hours=3))
    drain()
    # One delivered, one refused by PagerDuty with its errors (400: not retried).
    record_run(travel, "sched-2026-0002", match_count=3, ran_at=now - timedelta(hours=2))
    drain()
    # An ERROR run whose first attempt was rate limited: pending, with a next attempt.
    record_run(
        logins,
        "sched-2026-0003",
        match_count=0,
        errors=["search timed out after 300 s on index auth-logs-*"],
        ran_at=now - timedelta(hours=1),
    )
    fake_pagerduty.inject(Fault.status(429, headers={"Retry-After": "240"}), times=2)
    drain()
    # A run not matched: recorded, nothing queued.
    record_run(logins, "sched-2026-0004", match_count=0, ran_at=now - timedelta(minutes=30))
    # Queued and not yet tried, and one being sent right now.
    _, [queued, sending] = record_run(
        logins, "sched-2026-0005", match_count=17, ran_at=now - timedelta(minutes=1)
    )
    Delivery.objects.filter(pk=sending.pk).update(
        status=DeliveryStatus.SENDING, lease_expires_at=now + timedelta(seconds=30)
    )

    # Test alerts: one accepted and resolved, one refused.
    send_test_alert(destination=secops, sent_by=ADMIN_USERNAME, resolve=True)
    drain()
    send_test_alert(destination=refused, sent_by=ADMIN_USERNAME)

    create_api_token(name="detection-engine")
    group = Group.objects.create(name="On-call readers")
    group.permissions.set(Permission.objects.filter(codename__startswith="view_"))
    reader = User.objects.create_user("reader", password="a-long-reader-password", is_staff=True)
    reader.groups.add(group)

    def delivery(**filters) -> Delivery:
        return Delivery.objects.filter(**filters).order_by("-id").first()

    return {
        "destination": secops,
        "stale_destination": stale,
        "detection": logins,
        "matched_run": DetectionRun.objects.get(run_id="sched-2026-0001"),
        "error_run": DetectionRun.objects.get(run_id="sched-2026-0003"),
        "delivered": delivery(status=DeliveryStatus.DELIVERED, kind=DeliveryKind.TRIGGER),
        "refused": delivery(status=DeliveryStatus.FAILED, kind=DeliveryKind.TRIGGER),
        "retrying": delivery(status=DeliveryStatus.PENDING, total_attempts__gt=0),
        "queued": Delivery.objects.get(pk=queued.pk),
        "sending": Delivery.objects.get(pk=sending.pk),
        "test_delivered": delivery(status=DeliveryStatus.DELIVERED, kind=DeliveryKind.TEST),
        "test_refused": delivery(status=DeliveryStatus.FAILED, kind=DeliveryKind.TEST),
        "resolve": delivery(kind=DeliveryKind.RESOLVE),
        "group": group,
        "reader": reader,
    }


# The page scrolls sideways, or a box on it does: the admin wraps a list's table in a box that
# scrolls (#changelist-form .results), so a too-wide list leaves the page itself the window's width.
SIDEWAYS_SCROLLING = """() => {
  const cut = [];
  const page = document.documentElement;
  if (page.scrollWidth > window.innerWidth) cut.push(`page ${page.scrollWidth}px`);
  for (const box of document.querySelectorAll("body *")) {
    const overflow = getComputedStyle(box).overflowX;
    if ((overflow === "auto" || overflow === "scroll") && box.scrollWidth > box.clientWidth + 1) {
      const name = `${box.tagName.toLowerCase()}.${box.className}`;
      cut.push(`${name} ${box.scrollWidth}px in ${box.clientWidth}px`);
    }
  }
  return cut;
}"""


def sideways_scrolling(page) -> list[str]:
    """What scrolls sideways on the page at the window's width: the page, or boxes on it."""
    return page.evaluate(SIDEWAYS_SCROLLING)


def admin_pages(site: dict) -> list[tuple[str, str]]:
    """Every page of the admin, each with the name its screenshot is saved under."""

    def change(model: str, obj) -> str:
        return reverse(f"admin:{model}_change", args=[obj.pk])

    return [
        ("index", reverse("admin:index")),
        ("destinations", reverse("admin:destinations_destination_changelist")),
        ("destination-add", reverse("admin:destinations_destination_add")),
        ("destination-change", change("destinations_destination", site["destination"])),
        ("destination-stale", change("destinations_destination", site["stale_destination"])),
        ("deliveries", reverse("admin:destinations_delivery_changelist")),
        ("delivery-delivered", change("destinations_delivery", site["delivered"])),
        ("delivery-refused", change("destinations_delivery", site["refused"])),
        ("delivery-retrying", change("destinations_delivery", site["retrying"])),
        ("delivery-queued", change("destinations_delivery", site["queued"])),
        ("delivery-sending", change("destinations_delivery", site["sending"])),
        ("delivery-test-delivered", change("destinations_delivery", site["test_delivered"])),
        ("delivery-test-refused", change("destinations_delivery", site["test_refused"])),
        ("delivery-resolve", change("destinations_delivery", site["resolve"])),
        ("health", reverse("admin:destinations_health")),
        ("detections", reverse("admin:detections_detection_changelist")),
        ("detection-add", reverse("admin:detections_detection_add")),
        ("detection-change", change("detections_detection", site["detection"])),
        ("runs", reverse("admin:detections_detectionrun_changelist")),
        ("run-matched", change("detections_detectionrun", site["matched_run"])),
        ("run-error", change("detections_detectionrun", site["error_run"])),
        ("api-tokens", reverse("admin:detections_apitoken_changelist")),
        ("api-token", change("detections_apitoken", ApiToken.objects.get())),
        ("users", reverse("admin:auth_user_changelist")),
        ("user-add", reverse("admin:auth_user_add")),
        ("user-change", change("auth_user", site["reader"])),
        ("groups", reverse("admin:auth_group_changelist")),
        ("group-add", reverse("admin:auth_group_add")),
        ("group-change", change("auth_group", site["group"])),
    ]


def test_every_admin_page_at_1366_by_768_with_the_main_lists_fitting_the_width(
    admin_page, fake_pagerduty, screenshot
):
    assert VIEWPORT == {"width": 1366, "height": 768}
    site = seed_site(fake_pagerduty)
    page = admin_page
    overflowing = {}
    for name, url in admin_pages(site):
        response = page.goto(url)
        assert response.status == 200, f"{name}: {url} answered {response.status}"
        screenshot(name)
        if name == "delivery-refused":
            # The stored fields, unfolded, as someone digging into a failure reads them.
            page.get_by_text("Stored fields").click()
            screenshot(f"{name}-stored-fields")
        content = page.content()
        for key in SECRET_KEYS:
            assert key not in content, f"{name} shows a routing key"
        # There is no site besides the admin: the link opened a 404.
        assert "View site" not in content, name
        if cut := sideways_scrolling(page):
            overflowing[name] = cut
    assert {name: cut for name, cut in overflowing.items() if name in MAIN_LISTS} == {}
