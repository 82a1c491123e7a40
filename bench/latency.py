"""Latency: from a matching run's page being stored to the moment PagerDuty receives its event.

"Run → PagerDuty" starts when the intake writes the run's delivery (its `queued_at`, inside the
run's transaction) and ends when the fake PagerDuty has read the whole event: the time the
product adds between a stored run and a page. The floor is the same event posted straight to
PagerDuty by a plain HTTP client, timed the same way (its own send to its arrival). What the
engine sees end to end, from the start of its POST (the intake's own answer included), is
reported beside them as `post_p50_ms` / `post_p95_ms`, and the answer alone as `api_p50_ms`.

On SQLite runs come 50 ms apart, so a worker polling every 0.1 s is found at any point of its
wait. On PostgreSQL (`latency-postgres`) the worker is idle before each run (runs come farther
apart than its poll interval), so what is measured is how fast a notification wakes it.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import requests

from tests.support.fake_pagerduty import FakePagerDuty

from . import postgres
from .sites import PYTHON, Site, free_port, stop, wait_until

RUNS = 200
WARMUP = 10
SPACING_S = 0.05
WEB_WORKERS = 2
# PostgreSQL: 2.5 poll intervals (0.1 s) between runs, so the worker has gone idle before each.
POSTGRES_RUNS = 100
POSTGRES_SPACING_S = 0.25


def percentile(values: list[float], percent: float) -> float:
    """Nearest-rank percentile of the values."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * percent // 100))
    return ordered[int(rank) - 1]


def measure(workdir: Path, *, log=print) -> dict:
    """Post RUNS runs SPACING_S apart through gunicorn to a worker at default settings."""
    return _measure(workdir, runs=RUNS, spacing_s=SPACING_S)


def measure_postgres(workdir: Path, *, log=print) -> dict:
    """The same on a throwaway PostgreSQL database, the worker idle before each run."""
    url = postgres.server_url()
    if why := postgres.skip_reason(url):
        return {"skipped": why}
    with postgres.databases(url) as create:
        listening = _measure(
            workdir / "listening",
            runs=POSTGRES_RUNS,
            spacing_s=POSTGRES_SPACING_S,
            database_url=postgres.with_database(url, create("listening")),
        )
        # The same with the worker polling only, for comparison in the same run.
        polling = _measure(
            workdir / "polling",
            runs=POSTGRES_RUNS,
            spacing_s=POSTGRES_SPACING_S,
            database_url=postgres.with_database(url, create("polling")),
            worker_env={"DELIVERY_LISTEN": "False"},
        )
    listening["polling_p50_ms"] = polling["p50_ms"]
    listening["polling_p95_ms"] = polling["p95_ms"]
    listening["polling_post_p50_ms"] = polling["post_p50_ms"]
    listening["setup"]["worker"] += "; polling_*: the same with DELIVERY_LISTEN=False"
    return listening


def _measure(
    data_dir: Path,
    *,
    runs: int,
    spacing_s: float,
    database_url: str | None = None,
    worker_env: dict[str, str] | None = None,
) -> dict:
    """Post `runs` runs `spacing_s` apart through gunicorn to a worker at default settings."""
    # In this process, so the fake's arrival clock (time.monotonic) is the one the sender reads;
    # it answers at once, which costs it little. A second fake takes the direct posts.
    pagerduty = FakePagerDuty().start()
    direct = FakePagerDuty().start()
    processes = []
    try:
        site = Site.create(data_dir, events_url=pagerduty.url, database_url=database_url)
        site.manage("migrate", "--noinput", "-v", "0")
        plan_file = data_dir / "latency-plan.json"
        site.bench_step(
            "seed", "latency", "--runs", str(WARMUP + runs), "--plan-file", str(plan_file)
        )
        plan = json.loads(plan_file.read_text())
        token = site.manage("create_api_token", "bench").stdout.strip().splitlines()[-1]
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        # As the Procfile runs them: gunicorn with two workers, and one delivery worker.
        processes.append(
            site.spawn(
                PYTHON,
                "-m",
                "gunicorn",
                "project.wsgi",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(WEB_WORKERS),
                "--access-logfile",
                "-",
                log="web",
            )
        )
        worker_site = site.with_env(**(worker_env or {}))
        processes.append(worker_site.spawn(PYTHON, "manage.py", "deliver_alerts", log="worker"))
        if not wait_until(lambda: _answers(f"{base}/healthz"), timeout=30):
            raise RuntimeError("gunicorn did not answer /healthz within 30 seconds")

        api = requests.Session()
        api.headers.update({"Authorization": f"Bearer {token}"})
        plain = requests.Session()
        # Warm-up: both gunicorn workers load their code, the worker opens its connections.
        for entry in plan[:WARMUP]:
            _post_run(api, base, entry)
        if not pagerduty.wait_for(WARMUP, timeout=30):
            raise RuntimeError("the warm-up events never reached the fake PagerDuty")
        pagerduty.reset()

        sent_at: dict[str, float] = {}
        direct_sent_at: dict[str, float] = {}
        api_ms: list[float] = []
        started = time.monotonic()
        for index, entry in enumerate(plan[WARMUP:]):
            # Paced by the clock, not by the answers, so a slow answer does not stretch the gaps.
            delay = started + index * spacing_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sent_at[entry["run_id"]] = time.monotonic()
            _post_run(api, base, entry)
            api_ms.append(1000 * (time.monotonic() - sent_at[entry["run_id"]]))
            # The floor: the same event posted straight to PagerDuty as soon as the run is stored.
            direct_sent_at[entry["run_id"]] = time.monotonic()
            plain.post(
                direct.url,
                data=entry["event"].encode(),
                headers={"Content-Type": "application/json"},
                timeout=10,
            ).raise_for_status()
        if not pagerduty.wait_for(runs, timeout=30):
            raise RuntimeError(f"only {len(pagerduty.accepted)} of {runs} events arrived in time")
        queued_at = site.bench_step("queued_at")
    finally:
        for process in processes:
            stop(process)
        pagerduty.stop()
        direct.stop()

    # Wall clock (the intake's queued_at, the fake's arrival time) for run → PagerDuty; the
    # monotonic clock of this process for what it timed itself.
    latencies = _by_run(pagerduty, {run: queued_at[run] for run in sent_at}, clock="at")
    floors = _by_run(direct, direct_sent_at)
    posts = _by_run(pagerduty, sent_at)
    return {
        "p50_ms": round(percentile(latencies, 50), 1),
        "p95_ms": round(percentile(latencies, 95), 1),
        "max_ms": round(max(latencies), 1),
        "baseline_p50_ms": round(percentile(floors, 50), 1),
        "baseline_p95_ms": round(percentile(floors, 95), 1),
        "post_p50_ms": round(percentile(posts, 50), 1),
        "post_p95_ms": round(percentile(posts, 95), 1),
        "api_p50_ms": round(percentile(api_ms, 50), 1),
        "mean_ms": round(statistics.fmean(latencies), 1),
        "setup": {
            "database": "PostgreSQL" if database_url else "SQLite",
            "runs": runs,
            "spacing_s": spacing_s,
            "web": f"gunicorn, {WEB_WORKERS} workers",
            "worker": "deliver_alerts at default settings",
        },
    }


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _post_run(session: requests.Session, base: str, entry: dict) -> None:
    response = session.post(f"{base}/api/v1/detection-runs", json=entry["body"], timeout=10)
    if response.status_code != 201:
        raise RuntimeError(f"the API answered {response.status_code}: {response.text[:500]}")


def _by_run(
    fake: FakePagerDuty, started_at: dict[str, float], *, clock: str = "monotonic"
) -> list[float]:
    """Milliseconds from each run's start (on `clock`: "monotonic" or "at", the wall clock) to
    the fake's receipt of its event."""
    arrived = {}
    for record in fake.accepted:
        run_id = record.json["payload"]["custom_details"]["run_id"]
        arrived.setdefault(run_id, getattr(record, clock))
    missing = set(started_at) - set(arrived)
    if missing:
        raise RuntimeError(f"{len(missing)} events never arrived, e.g. {sorted(missing)[:3]}")
    return [1000 * (arrived[run_id] - started) for run_id, started in started_at.items()]
