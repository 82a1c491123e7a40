"""Throughput on PostgreSQL with 1, 2 and 4 `deliver_alerts` processes sharing one queue."""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from . import throughput
from .sites import PYTHON, Site, fake_pagerduty, stop

PROCESSES = (1, 2, 4)
# Where PostgreSQL is looked for when neither BENCH_DATABASE_URL nor DATABASE_URL names one.
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/postgres"


def server_url() -> str | None:
    """The PostgreSQL server to use: BENCH_DATABASE_URL, a postgres DATABASE_URL, or the local one.

    BENCH_DATABASE_URL set but empty turns the PostgreSQL runs off.
    """
    if "BENCH_DATABASE_URL" in os.environ:
        return os.environ["BENCH_DATABASE_URL"] or None
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql://")):
        return url
    return DEFAULT_URL


def skip_reason(url: str | None) -> str | None:
    """Why the PostgreSQL sections cannot run against `url` (from server_url()), or None."""
    if url is None:
        return "BENCH_DATABASE_URL is set empty"
    try:
        connect(url).close()
    except psycopg.Error as error:
        return f"no PostgreSQL reachable at {safe(url)}: {error}".strip()
    return None


def with_database(url: str, name: str) -> str:
    """The same server URL naming another database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def connect(url: str) -> psycopg.Connection:
    """An autocommit connection for CREATE/DROP DATABASE (which cannot run in a transaction)."""
    parts = urlsplit(url)
    return psycopg.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        user=parts.username or "postgres",
        password=parts.password,
        dbname=parts.path.lstrip("/") or "postgres",
        autocommit=True,
        connect_timeout=3,
    )


@contextlib.contextmanager
def databases(url: str) -> Iterator[callable]:
    """Yield a function that creates a throwaway database (optionally from a template).

    Every database it made is dropped on the way out, whatever happened.
    """
    made: list[str] = []
    prefix = f"bench_{secrets.token_hex(4)}"
    with connect(url) as admin:

        def create(suffix: str, *, template: str | None = None) -> str:
            name = f"{prefix}_{suffix}"
            statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            if template:
                statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
            admin.execute(statement)
            made.append(name)
            return name

        try:
            yield create
        finally:
            for name in reversed(made):
                admin.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


def measure(workdir: Path, *, baseline_per_s: float | None = None, log=print) -> dict:
    """Deliveries/s with 1, 2 and 4 worker processes (each --concurrency 8), or why not run."""
    url = server_url()
    if why := skip_reason(url):
        return {"skipped": why}
    results: dict = {"server": safe(url), "by_processes": {}}
    with databases(url) as create:
        template = create("template")
        with fake_pagerduty(latency=throughput.PAGERDUTY_LATENCY) as events_url:
            backlog = throughput.prepare_backlog(
                workdir / "postgres",
                events_url=events_url,
                database_url=with_database(url, template),
            )
        for processes in PROCESSES:
            name = create(f"run{processes}", template=template)
            site = backlog.seeded.with_env(DATABASE_URL=with_database(url, name))
            with fake_pagerduty(latency=throughput.PAGERDUTY_LATENCY) as events_url:
                seconds, delivered = _run_processes(site, processes, events_url=events_url)
            if delivered != throughput.DELIVERIES:
                raise RuntimeError(f"{processes} workers delivered {delivered} events, not all")
            per_s = delivered / seconds
            results["by_processes"][str(processes)] = round(per_s, 1)
            log(f"  PostgreSQL, {processes} worker process(es): {per_s:.0f}/s")
    if baseline_per_s:
        results["ratio_1_process"] = round(results["by_processes"]["1"] / baseline_per_s, 3)
    return results


def _run_processes(site: Site, processes: int, *, events_url: str) -> tuple[float, int]:
    """Start the workers together; seconds until the last has exited, and what they delivered."""
    site = site.with_env(PAGERDUTY_EVENTS_URL=events_url)
    started = time.perf_counter()
    children = [
        site.spawn(
            PYTHON,
            "manage.py",
            "deliver_alerts",
            "--once",
            "--concurrency",
            str(throughput.CONCURRENCY),
            log=f"pg-worker-{processes}-{n}",
        )
        for n in range(processes)
    ]
    delivered = 0
    try:
        for child in children:
            finished = site.finish(child)
            delivered += throughput.delivered_count(
                finished.stdout, finished.returncode, finished.stderr
            )
    finally:
        for child in children:
            stop(child)  # only the ones a failure above left running
    return time.perf_counter() - started, delivered


def safe(url: str) -> str:
    """The URL without its password, for the report."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts)
