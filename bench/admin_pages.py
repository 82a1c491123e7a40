"""Admin pages over a large delivery log: queries with 10 and 1,000 destinations, and timings."""

from __future__ import annotations

import shutil
from pathlib import Path

from .sites import Site

DELIVERIES = 100_000
SMALL, LARGE = 10, 1000
REQUESTS = 20
# Nothing is sent: the events URL only has to be set.
UNUSED_EVENTS_URL = "http://127.0.0.1:9/v2/enqueue"


def measure(workdir: Path, *, log=print) -> tuple[dict, dict]:
    """The destinations list and the health page; returns (admin, health) results."""
    large = Site.create(workdir / f"admin-{LARGE}", events_url=UNUSED_EVENTS_URL)
    large.manage("migrate", "--noinput", "-v", "0")
    large.manage("collectstatic", "--noinput", "-v", "0")  # the pages name hashed files
    large.bench_step(
        "seed", "history", "--destinations", str(LARGE), "--deliveries", str(DELIVERIES)
    )
    # The same delivery log over 10 destinations: a copy, regrouped.
    small = large.clone(workdir / f"admin-{SMALL}")
    shutil.copytree(large.data_dir / "static", small.data_dir / "static")
    small.bench_step("seed", "regroup", "--destinations", str(SMALL))
    pages = {}
    for destinations, site in ((SMALL, small), (LARGE, large)):
        pages[destinations] = site.bench_step("page_timing", "--requests", str(REQUESTS))
        log(f"  admin pages with {destinations} destinations: {pages[destinations]}")
    small, large = pages[SMALL]["destinations"], pages[LARGE]["destinations"]
    admin = {
        "queries_10": small.get("queries"),
        "queries_1000": large.get("queries"),
        "p50_ms": large.get("p50_ms"),
        "p95_ms": large.get("p95_ms"),
        "p50_ms_10": small.get("p50_ms"),
    }
    health_small, health_large = pages[SMALL]["health"], pages[LARGE]["health"]
    if health_large.get("status") != 200:
        health = {
            "p50_ms": None,
            "note": f"not measured: {health_large.get('error', 'no answer')}",
        }
    else:
        health = {
            "p50_ms": health_large["p50_ms"],
            "p95_ms": health_large["p95_ms"],
            "queries_10": health_small.get("queries"),
            "queries_1000": health_large["queries"],
            "p50_ms_10": health_small.get("p50_ms"),
        }
    setup = {"deliveries": DELIVERIES, "destinations": [SMALL, LARGE], "requests": REQUESTS}
    admin["setup"] = health["setup"] = setup
    return admin, health
