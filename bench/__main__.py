"""Run the benchmarks, print a table, write bench/results.json: `python -m bench [SECTION ...]`."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from . import admin_pages, latency, postgres, prune, rotation, scale, throughput
from .report import evaluate, table
from .sites import ROOT

SECTIONS = (
    "throughput",
    "postgres",
    "latency",
    "latency-postgres",
    "admin",
    "rotation",
    "scale",
    "prune",
)
DEFAULT_OUTPUT = Path(__file__).with_name("results.json")


def log(message: str) -> None:
    """Progress on stderr, so stdout carries only the table."""
    print(message, file=sys.stderr, flush=True)


def run_sections(sections: list[str], workdir: Path) -> dict:
    """Run the chosen sections; a section that fails records its error and the rest still run."""
    results: dict = {}
    for section in sections:
        log(f"[{section}]")
        started = time.perf_counter()
        try:
            if section == "throughput":
                measured = throughput.measure(workdir / section, log=log)
                results["worker"] = {"peak_rss_mb": measured["peak_rss_mb"]}
                results["throughput"] = measured
            elif section == "postgres":
                baseline = results.get("throughput", {}).get("baseline_per_s")
                results.setdefault("throughput", {})["postgres"] = postgres.measure(
                    workdir / section, baseline_per_s=baseline, log=log
                )
            elif section == "latency":
                results["latency"] = latency.measure(workdir / section, log=log)
            elif section == "latency-postgres":
                results["latency_postgres"] = latency.measure_postgres(workdir / section, log=log)
            elif section == "admin":
                results["admin"], results["health"] = admin_pages.measure(
                    workdir / section, log=log
                )
            elif section == "rotation":
                results["rotation"] = rotation.measure(workdir / section, log=log)
            elif section == "scale":
                results["scale"] = scale.measure(workdir / section, log=log)
            elif section == "prune":
                results["prune"] = prune.measure(workdir / section, log=log)
        except Exception as error:
            log(traceback.format_exc())
            results.setdefault("errors", {})[section] = f"{type(error).__name__}: {error}"
        log(f"  ({time.perf_counter() - started:.0f} s)")
    return results


def environment() -> dict:
    """Where and on what the figures were taken."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "load_average_at_start": os.getloadavg()[0],
    }


def compile_project() -> None:
    """Write the project's bytecode first, as an installed service has it.

    Otherwise a shell with PYTHONDONTWRITEBYTECODE set (this machine's) makes every process the
    bench starts compile the project's modules from source again (35–80 ms of each start-up).
    """
    import compileall

    for folder in ("project", "destinations", "detections", "bench", "tests"):
        compileall.compile_dir(ROOT / folder, quiet=1, workers=1)


def main(argv: list[str] | None = None) -> int:
    """Run, print the table, write the JSON; exit 1 when a section could not be measured."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "sections",
        nargs="*",
        metavar="SECTION",
        help=f"what to run (default all: {', '.join(SECTIONS)})",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the JSON to write")
    parser.add_argument(
        "--keep", action="store_true", help="keep the working folder (sites, logs) for a look"
    )
    args = parser.parse_args(argv)
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {', '.join(sorted(unknown))}; pick from {SECTIONS}")
    sections = [s for s in SECTIONS if s in (args.sections or SECTIONS)]

    started = time.perf_counter()
    meta = environment()
    compile_project()
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    try:
        results = run_sections(sections, workdir)
    finally:
        if args.keep:
            log(f"working folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    meta["seconds"] = round(time.perf_counter() - started, 1)
    results["meta"] = meta
    results["targets"] = evaluate(results, sections)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results, sections))
    print(f"\nWritten to {args.output} in {meta['seconds']:.0f} s.")
    return 1 if results.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
