"""Throwaway sites for the benchmarks, each with its own data folder, keys and database."""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
DB_FILE = "db.sqlite3"
# Every child is bounded in time, so a hung one cannot stall `make bench` for ever.
DEFAULT_TIMEOUT = 300.0
# Settings a developer's shell may carry (see project/settings.py): every site starts from the
# defaults, so the figures do not depend on who ran them.
_SETTINGS = frozenset(
    {
        "ALLOWED_HOSTS",
        "BEHIND_TLS_PROXY",
        "CONN_MAX_AGE",
        "CSRF_TRUSTED_ORIGINS",
        "DATABASE_URL",
        "DATA_DIR",
        "DEBUG",
        "DJANGO_SETTINGS_MODULE",
        "ENV_FILE",
        "FIELD_ENCRYPTION_KEYS",
        "LOG_LEVEL",
        "PAGERDUTY_DEFAULT_SOURCE",
        "PAGERDUTY_EVENTS_URL",
        "ROUTING_KEY_MAX_AGE_DAYS",
        "SECRET_KEY",
        "SITE_URL",
    }
)


def _inherited(name: str) -> bool:
    """Whether a variable of the harness's environment is passed on to a site's processes."""
    return name not in _SETTINGS and not name.startswith(("DELIVERY_", "SECURE_", "WEB_"))


def fernet_key() -> str:
    """A fresh Fernet key for FIELD_ENCRYPTION_KEYS."""
    return Fernet.generate_key().decode()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class Finished:
    """A child process that ran to its end: exit code, wall time, peak memory and output."""

    returncode: int
    seconds: float
    cpu_seconds: float
    peak_rss_mb: float
    stdout: str
    stderr: str


@dataclass
class Site:
    """One installation of the product: its own DATA_DIR (and SQLite file) or database URL."""

    data_dir: Path
    env: dict[str, str] = field(repr=False)

    @classmethod
    def create(
        cls,
        data_dir: Path,
        *,
        events_url: str,
        keys: list[str] | None = None,
        database_url: str | None = None,
    ) -> Site:
        """A new site whose settings come from the environment only (ENV_FILE is empty)."""
        data_dir.mkdir(parents=True)
        env = {name: value for name, value in os.environ.items() if _inherited(name)}
        env.update(
            DJANGO_SETTINGS_MODULE="project.settings",
            ENV_FILE="",
            DATA_DIR=str(data_dir),
            SECRET_KEY=Fernet.generate_key().decode() * 2,
            FIELD_ENCRYPTION_KEYS=",".join(keys or [fernet_key()]),
            PAGERDUTY_EVENTS_URL=events_url,
            ALLOWED_HOSTS="127.0.0.1,localhost,testserver",
            # Served over plain HTTP on the loopback, as behind a TLS-terminating proxy.
            SECURE_SSL_REDIRECT="False",
            SESSION_COOKIE_SECURE="False",
            CSRF_COOKIE_SECURE="False",
            PYTHONUNBUFFERED="1",
        )
        if database_url:
            env["DATABASE_URL"] = database_url
        return cls(data_dir=data_dir, env=env)

    def clone(self, data_dir: Path, **overrides: str) -> Site:
        """A copy of this SQLite site in another folder, so each run starts from the same rows."""
        data_dir.mkdir(parents=True)
        # The write-ahead log too, should a process have left one behind (it holds commits).
        for name in (DB_FILE, f"{DB_FILE}-wal"):
            if (self.data_dir / name).exists():
                shutil.copyfile(self.data_dir / name, data_dir / name)
        return Site(data_dir=data_dir, env={**self.env, "DATA_DIR": str(data_dir), **overrides})

    def with_env(self, **overrides: str) -> Site:
        """The same site seen with other settings (another key list, say)."""
        return Site(data_dir=self.data_dir, env={**self.env, **overrides})

    def run(self, *argv: str, timeout: float = DEFAULT_TIMEOUT) -> Finished:
        """Run a child to its end in this site's environment; a failure raises with its output."""
        finished = self.finish(self.spawn(*argv), timeout=timeout)
        if finished.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv)} exited {finished.returncode}:\n"
                f"{finished.stdout[-2000:]}\n{finished.stderr[-4000:]}"
            )
        return finished

    def manage(self, *args: str, timeout: float = DEFAULT_TIMEOUT) -> Finished:
        """Run `manage.py <args>` to its end."""
        return self.run(PYTHON, "manage.py", *args, timeout=timeout)

    def bench_step(self, module: str, *args: str, timeout: float = DEFAULT_TIMEOUT) -> dict:
        """Run `python -m bench.<module>` (a Django-side step); return the JSON it prints last."""
        finished = self.run(PYTHON, "-m", f"bench.{module}", *args, timeout=timeout)
        return json.loads(finished.stdout.strip().splitlines()[-1])

    def spawn(self, *argv: str, log: str | None = None) -> subprocess.Popen:
        """Start a child; with `log`, its output goes to files instead of pipes (long runners)."""
        if log is None:
            out = err = subprocess.PIPE
        else:
            out = (self.data_dir / f"{log}.out").open("w")
            err = (self.data_dir / f"{log}.err").open("w")
        started = time.perf_counter()
        try:
            process = subprocess.Popen(
                argv, cwd=ROOT, env=self.env, stdout=out, stderr=err, text=True
            )
        finally:
            if log is not None:
                out.close()  # the child holds its own copies
                err.close()
        process.started = started  # type: ignore[attr-defined]
        process.log = log  # type: ignore[attr-defined]
        return process

    def finish(self, process: subprocess.Popen, *, timeout: float = DEFAULT_TIMEOUT) -> Finished:
        """Wait for a child, measuring its own peak RSS (wait4 reports that child alone)."""
        killer = threading.Timer(timeout, _kill_quietly, args=(process,))
        killer.start()
        try:
            if process.stdout is not None:
                # Pipes are drained by communicate(); wait4 then only collects the exit.
                stdout, stderr = _drain(process)
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            killer.cancel()
        seconds = time.perf_counter() - process.started  # type: ignore[attr-defined]
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.stdout is None:
            log = process.log  # type: ignore[attr-defined]
            stdout = (self.data_dir / f"{log}.out").read_text()
            stderr = (self.data_dir / f"{log}.err").read_text()
        return Finished(
            returncode=process.returncode,
            seconds=seconds,
            cpu_seconds=usage.ru_utime + usage.ru_stime,
            # Linux reports ru_maxrss in KiB.
            peak_rss_mb=usage.ru_maxrss / 1024,
            stdout=stdout,
            stderr=stderr,
        )


def _drain(process: subprocess.Popen) -> tuple[str, str]:
    """Read a child's stdout and stderr to their end without letting either pipe fill up."""
    out, err = process.stdout.fileno(), process.stderr.fileno()
    chunks: dict[int, list[str]] = {out: [], err: []}
    open_fds = {out, err}
    while open_fds:
        ready, _, _ = select.select(list(open_fds), [], [])
        for fd in ready:
            data = os.read(fd, 65536)
            if data:
                chunks[fd].append(data.decode(errors="replace"))
            else:
                open_fds.discard(fd)
    process.stdout.close()
    process.stderr.close()
    return "".join(chunks[out]), "".join(chunks[err])


def _kill_quietly(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.kill()


def stop(process: subprocess.Popen, *, grace: float = 10.0) -> None:
    """End a long-running child: SIGTERM, then SIGKILL if it has not gone after `grace` seconds."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        _kill_quietly(process)
        process.wait(5)


@contextlib.contextmanager
def fake_pagerduty(*, latency: float, env: dict[str, str] | None = None) -> Iterator[str]:
    """Run the tests' fake PagerDuty as its own process and yield its events URL."""
    process = subprocess.Popen(
        [PYTHON, "-m", "tests.support.fake_pagerduty", "--port", "0", "--latency", str(latency)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        ready, _, _ = select.select([process.stdout], [], [], 30)
        line = process.stdout.readline() if ready else ""
        if not line.startswith("listening on "):
            raise RuntimeError(f"the fake PagerDuty did not start (said {line!r})")
        yield line.removeprefix("listening on ").strip()
    finally:
        stop(process, grace=5)
        process.stdout.close()


def wait_until(predicate, *, timeout: float, interval: float = 0.05) -> bool:
    """Poll `predicate` until it is true or `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
