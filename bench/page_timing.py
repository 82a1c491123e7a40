"""Time admin pages in the site's own process: `python -m bench.page_timing --requests N`.

Run in the site's environment (bench.sites.Site.bench_step); prints one JSON line at the end.
Pages are rendered through the whole middleware stack by Django's test client, logged in as a
superuser, so the figures are the view's own cost without an HTTP server in front.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import django

PAGES = {
    "destinations": "/admin/destinations/destination/",
    "health": "/admin/destinations/health/",
}


def time_page(client, path: str, *, requests: int) -> dict:
    """Queries and p50/p95 milliseconds of GET path, or why it could not be measured."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    first = client.get(path)  # also warms caches (templates, content types)
    if first.status_code != 200:
        return {"status": first.status_code, "error": f"GET {path} answered {first.status_code}"}
    with CaptureQueriesContext(connection) as queries:
        client.get(path)
    # Counted now: the next request clears the log this reads from.
    query_count = len(queries.captured_queries)
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get(path)
        times.append(1000 * (time.perf_counter() - started))
        if response.status_code != 200:
            return {"status": response.status_code, "error": f"GET {path} failed while timed"}
    times.sort()
    return {
        "status": 200,
        "queries": query_count,
        "p50_ms": round(statistics.median(times), 1),
        "p95_ms": round(times[max(0, round(0.95 * len(times)) - 1)], 1),
        "bytes": len(first.content),
    }


def main(argv: list[str] | None = None) -> int:
    """Log in as a new superuser and time each page."""
    parser = argparse.ArgumentParser(prog="python -m bench.page_timing")
    parser.add_argument("--requests", type=int, default=20, help="timed requests per page")
    args = parser.parse_args(argv)
    django.setup()
    from django.contrib.auth import get_user_model
    from django.test import Client

    users = get_user_model().objects
    user = users.filter(username="bench").first() or users.create_superuser("bench", None, None)
    client = Client()
    client.force_login(user)
    results = {
        name: time_page(client, path, requests=args.requests) for name, path in PAGES.items()
    }
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
