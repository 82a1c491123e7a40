"""Running the delivery worker beside the tests: as a real `deliver_alerts` process, or a thread."""

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.db import connection

from destinations.delivery.worker import Worker

ROOT = Path(__file__).resolve().parents[2]


def test_database_url() -> str:
    """A DATABASE_URL naming the database the running tests use (committed rows only)."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def start_worker(*args: str, events_url: str, **env: str) -> subprocess.Popen:
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "DATABASE_URL": test_database_url(),
        "PAGERDUTY_EVENTS_URL": events_url,
        "DELIVERY_POLL_INTERVAL_SECONDS": "0.05",
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "manage.py", "deliver_alerts", *args],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


class RunningWorker:
    """A `deliver_alerts` process whose output is read as it comes, so its pipes never fill."""

    def __init__(self, events_url: str, *args: str, **env: str) -> None:
        self.process = start_worker(*args, events_url=events_url, **env)
        self.output: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(stream,), daemon=True)
            for stream in (self.process.stdout, self.process.stderr)
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream) -> None:
        self.output.append(stream.read())

    def stop(self, signum: int) -> str:
        """Send the signal, wait for the process to end, and return everything it wrote."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for reader in self._readers:
            reader.join(timeout=10)
        return "".join(self.output)


def wait_until(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


@contextlib.contextmanager
def worker_thread(*, concurrency: int, name: str = "test-worker") -> Iterator[Worker]:
    """The delivery worker in a background thread, as `deliver_alerts` runs beside the web."""
    worker = Worker(concurrency=concurrency, poll_interval=0.05)

    def run() -> None:
        try:
            worker.run()
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(timeout=30)
    assert not thread.is_alive(), "the delivery worker did not stop within 30 seconds"
