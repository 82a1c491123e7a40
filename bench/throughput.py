"""Throughput: `deliver_alerts --once` draining a backlog, against a plain pool of HTTP clients."""

from __future__ import annotations

import re
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

from .sites import PYTHON, Site, fake_pagerduty

DELIVERIES = 2000
# 20 deliveries per destination: exactly the default burst, so the send budget never binds.
DESTINATIONS = 100
PAGERDUTY_LATENCY = 0.02
CONCURRENCY = 8
# Five pairs: on a shared 2-core machine one pair in three or four strays by 5% either way, and
# the median of five is not moved by two of them.
REPEATS = 5
# Around the default width. 1 and 2 (38 and 73 /s here: one 20 ms answer at a time per thread)
# took 80 s of the section for two points that only restate the fake's latency.
SWEEP = (4, 8, 16)
_STOPPED = re.compile(r"Worker stopped: delivered (\d+), retrying (\d+), failed (\d+)")


@dataclass(frozen=True)
class Backlog:
    """A migrated site holding the due deliveries, an empty twin, and the events to post."""

    seeded: Site
    empty: Site | None  # a migrated twin without deliveries (SQLite only), for start-up runs
    bodies_file: Path  # the events to post, one JSON document a line


@dataclass(frozen=True)
class WorkerRun:
    """One `deliver_alerts --once` process, timed from start to exit."""

    concurrency: int
    processes: int
    seconds: float
    cpu_seconds: float
    peak_rss_mb: float
    delivered: int

    @property
    def per_s(self) -> float:
        return self.delivered / self.seconds


def prepare_backlog(workdir: Path, *, events_url: str, database_url: str | None = None) -> Backlog:
    """Migrate a site and queue DELIVERIES due deliveries of distinct detections through the ORM."""
    site = Site.create(workdir / "backlog", events_url=events_url, database_url=database_url)
    site.manage("migrate", "--noinput", "-v", "0")
    bodies_file = workdir / "events.jsonl"
    empty = site.clone(workdir / "empty") if database_url is None else None
    seeded = site
    seeded.bench_step(
        "seed",
        "outbox",
        "--deliveries",
        str(DELIVERIES),
        "--destinations",
        str(DESTINATIONS),
        "--events-file",
        str(bodies_file),
    )
    return Backlog(seeded=seeded, empty=empty, bodies_file=bodies_file)


def run_worker(site: Site, *, concurrency: int, events_url: str | None = None) -> WorkerRun:
    """Drain the site's queue with one `deliver_alerts --once` process and check all went out."""
    if events_url is not None:
        site = site.with_env(PAGERDUTY_EVENTS_URL=events_url)
    finished = site.finish(
        site.spawn(
            PYTHON,
            "manage.py",
            "deliver_alerts",
            "--once",
            "--concurrency",
            str(concurrency),
            log=f"worker-{concurrency}",
        )
    )
    delivered = delivered_count(finished.stdout, finished.returncode, finished.stderr)
    return WorkerRun(
        concurrency=concurrency,
        processes=1,
        seconds=finished.seconds,
        cpu_seconds=finished.cpu_seconds,
        peak_rss_mb=finished.peak_rss_mb,
        delivered=delivered,
    )


def delivered_count(stdout: str, returncode: int, stderr: str) -> int:
    """The worker's own count of delivered events; anything else than all delivered is an error."""
    match = _STOPPED.search(stdout)
    if returncode != 0 or match is None:
        raise RuntimeError(f"deliver_alerts failed ({returncode}):\n{stdout}\n{stderr[-3000:]}")
    delivered, retrying, failed = map(int, match.groups())
    if retrying or failed:
        raise RuntimeError(f"deliver_alerts did not deliver everything: {match.group(0)}")
    return delivered


def run_baseline(
    site: Site, bodies_file: Path, *, events_url: str, threads: int = CONCURRENCY
) -> float:
    """Seconds for a pool of `threads` plain HTTP sessions to post every body; no database.

    Its own process (bench/bare_pool.py), timed from start to exit as the worker is: both sides
    pay for an interpreter and their imports, the worker for Django's besides.
    """
    finished = site.run(PYTHON, "-m", "bench.bare_pool", events_url, str(bodies_file), str(threads))
    return finished.seconds


def measure(workdir: Path, *, log=print) -> dict:
    """The worker against the baseline (REPEATS interleaved pairs), start-up, and the sweep."""
    with fake_pagerduty(latency=PAGERDUTY_LATENCY) as url:
        backlog = prepare_backlog(workdir, events_url=url)
    runs: list[WorkerRun] = []
    baselines: list[float] = []
    # Interleaved, each with a fresh fake PagerDuty (its records grow with every event), so a
    # busy moment on the machine weighs on both sides alike; which side goes first alternates.
    for repeat in range(REPEATS):
        for side in ("baseline", "worker") if repeat % 2 == 0 else ("worker", "baseline"):
            with fake_pagerduty(latency=PAGERDUTY_LATENCY) as url:
                if side == "baseline":
                    baselines.append(
                        run_baseline(backlog.seeded, backlog.bodies_file, events_url=url)
                    )
                else:
                    site = backlog.seeded.clone(workdir / f"run-{repeat}")
                    runs.append(run_worker(site, concurrency=CONCURRENCY, events_url=url))
        log(
            f"  throughput run {repeat + 1}/{REPEATS}: worker {runs[-1].per_s:.0f}/s, "
            f"baseline {DELIVERIES / baselines[-1]:.0f}/s"
        )
    # Nothing is due, so this is Django's start-up, the system checks, one claim and the exit.
    startups = [
        run_worker(backlog.empty.clone(workdir / f"startup-{n}"), concurrency=CONCURRENCY)
        for n in range(REPEATS)
    ]
    startup_s = statistics.median(run.seconds for run in startups)
    worker_s = statistics.median(run.seconds for run in runs)
    pair_ratios = [base / run.seconds for base, run in zip(baselines, runs, strict=True)]
    baseline_s = statistics.median(baselines)
    sweep = {}
    for concurrency in SWEEP:
        if concurrency == CONCURRENCY:
            sweep[str(concurrency)] = round(DELIVERIES / worker_s, 1)
            continue
        with fake_pagerduty(latency=PAGERDUTY_LATENCY) as url:
            site = backlog.seeded.clone(workdir / f"sweep-{concurrency}")
            run = run_worker(site, concurrency=concurrency, events_url=url)
        sweep[str(concurrency)] = round(run.per_s, 1)
        log(f"  --concurrency {concurrency}: {run.per_s:.0f}/s")
    return {
        "deliveries_per_s": round(DELIVERIES / worker_s, 1),
        "baseline_per_s": round(DELIVERIES / baseline_s, 1),
        # Pair by pair (each worker run against the baseline run beside it), then the median:
        # a drift of the machine's speed during the section weighs on both sides of a pair alike.
        "ratio": round(statistics.median(pair_ratios), 3),
        "pair_ratios": [round(ratio, 3) for ratio in pair_ratios],
        "startup_s": round(startup_s, 3),
        "deliveries_per_s_after_startup": round(DELIVERIES / (worker_s - startup_s), 1),
        "cpu_ms_per_delivery": round(
            1000 * statistics.median(run.cpu_seconds for run in runs) / DELIVERIES, 2
        ),
        "peak_rss_mb": round(max(run.peak_rss_mb for run in runs), 1),
        "by_concurrency": sweep,
        "runs": [asdict(run) for run in runs],
        "baseline_seconds": [round(seconds, 3) for seconds in baselines],
        "setup": {
            "deliveries": DELIVERIES,
            "destinations": DESTINATIONS,
            "pagerduty_latency_s": PAGERDUTY_LATENCY,
            "concurrency": CONCURRENCY,
            "repeats": REPEATS,
        },
    }
