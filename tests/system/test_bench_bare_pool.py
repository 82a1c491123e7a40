"""The throughput baseline of `make bench`: a bare pool of `requests` sessions, as a process."""

import json
import subprocess
import sys

from bench.sites import ROOT
from tests.support.fake_pagerduty.server import FakePagerDuty, Fault
from tests.support.routing_keys import ROUTING_KEY


def event(n: int) -> dict:
    return {
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "dedup_key": f"run-{n}",
        "payload": {"summary": f"Run {n}", "source": "bench", "severity": "error"},
    }


def write_events(path, count: int):
    path.write_text("".join(json.dumps(event(n)) + "\n" for n in range(count)))
    return path


def bare_pool(url: str, bodies_file, threads: int = 3) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bench.bare_pool", url, str(bodies_file), str(threads)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_every_line_is_posted_once_and_the_count_is_printed(tmp_path):
    bodies_file = write_events(tmp_path / "events.jsonl", 7)
    with FakePagerDuty() as fake:
        result = bare_pool(fake.url, bodies_file)

    assert result.returncode == 0, result.stderr
    assert result.stdout == "accepted 7 of 7\n"
    posted = sorted(received.json["dedup_key"] for received in fake.received)
    assert posted == sorted(f"run-{n}" for n in range(7))


def test_a_refused_event_fails_the_baseline(tmp_path):
    bodies_file = write_events(tmp_path / "events.jsonl", 2)
    with FakePagerDuty() as fake:
        fake.inject(Fault.status(500), times=1)
        result = bare_pool(fake.url, bodies_file, threads=1)

    assert result.returncode == 1
    assert result.stdout == "accepted 1 of 2\n"
