"""The targets of the benchmarks, checked against the results, and the table printed at the end."""

from __future__ import annotations

from dataclasses import dataclass

from . import scale


@dataclass(frozen=True)
class Target:
    """One figure of results.json, the section measuring it, its unit and its bar if any."""

    key: str
    section: str
    unit: str
    bar: str = ""  # ">= 0.8", "<= 100", "== admin.queries_10", or "" for none

    def check(self, results: dict) -> bool | None:
        """True/False against the bar, None when there is no bar or no figure."""
        value = lookup(results, self.key)
        if not self.bar or value is None:
            return None
        operator, operand = self.bar.split(" ", 1)
        other = lookup(results, operand) if operand[0].isalpha() else float(operand)
        if other is None:
            return None
        return {">=": value >= other, "<=": value <= other, "==": value == other}[operator]


TARGETS = (
    Target("throughput.deliveries_per_s", "throughput", "/s"),
    Target("throughput.baseline_per_s", "throughput", "/s"),
    Target("throughput.ratio", "throughput", "", ">= 0.9"),
    Target("throughput.startup_s", "throughput", "s"),
    Target("throughput.deliveries_per_s_after_startup", "throughput", "/s"),
    Target("worker.peak_rss_mb", "throughput", "MB", "<= 150"),
    Target("throughput.postgres.ratio_1_process", "postgres", "", ">= 0.9"),
    Target("latency.p50_ms", "latency", "ms", "<= 100"),
    Target("latency.p95_ms", "latency", "ms", "<= 250"),
    Target("latency.baseline_p50_ms", "latency", "ms"),
    Target("latency.post_p50_ms", "latency", "ms"),
    Target("latency_postgres.p50_ms", "latency-postgres", "ms", "<= 15"),
    Target("latency_postgres.p95_ms", "latency-postgres", "ms", "<= 40"),
    Target("latency_postgres.baseline_p50_ms", "latency-postgres", "ms"),
    Target("latency_postgres.post_p50_ms", "latency-postgres", "ms"),
    Target("latency_postgres.api_p50_ms", "latency-postgres", "ms"),
    Target("latency_postgres.polling_p50_ms", "latency-postgres", "ms"),
    Target("admin.queries_10", "admin", ""),
    Target("admin.queries_1000", "admin", "", "== admin.queries_10"),
    Target("admin.p50_ms", "admin", "ms", "<= 300"),
    Target("health.p50_ms", "admin", "ms", "<= 500"),
    Target("rotation.rows_per_s", "rotation", "/s", ">= 2000"),
    Target("rotation.rows_per_s_in_process", "rotation", "/s"),
    # Flat costs (§12): each item's median with the large store over the small one's.
    *(Target(f"scale.{item}.ratio", "scale", "×", f"<= {scale.MAX_RATIO}") for item in scale.ITEMS),
    Target("prune.seconds", "prune", "s", "<= 60"),
    Target("prune.prune_seconds", "prune", "s"),
    Target("prune.lost", "prune", "", "== 0"),
)


def lookup(results: dict, key: str):
    """The value at a dotted key, or None."""
    value = results
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def evaluate(results: dict, sections: list[str]) -> dict:
    """Each target of the sections run: its bar and whether it held (None: no bar, or no figure)."""
    return {
        target.key: {"bar": target.bar or None, "met": target.check(results)}
        for target in TARGETS
        if target.section in sections
    }


def scale_lines(results: dict) -> list[str]:
    """The scale section's medians at both sizes, one line an item."""
    measured = results.get("scale")
    if not measured:
        return []
    if "skipped" in measured:
        return ["", f"Scale: skipped ({measured['skipped']})"]
    setup = measured.get("setup", {})
    small, large = setup.get("small", 0), setup.get("large", 0)
    lines = ["", f"Scale, median ms with {small:,} and {large:,} deliveries (ratio, queries):"]
    if large < setup.get("design_large", large):
        lines.append(
            f"  (the design's {setup['design_large']:,} is BENCH_SCALE_DELIVERIES="
            f"{setup['design_large']}; {large:,} is what fits in make bench here)"
        )
    for item in scale.ITEMS:
        figures = measured.get(item, {})
        if "note" in figures:
            lines.append(f"  {item}: {figures['note']}")
        elif figures:
            lines.append(
                f"  {item}: {figures['small_ms']:g} → {figures['large_ms']:g} ms"
                f" (×{figures['ratio']:g}, queries {figures['queries_small']}"
                f" → {figures['queries_large']})"
            )
    return lines


def table(results: dict, sections: list[str]) -> str:
    """The figures of the sections run as a plain-text table, with the scaling figures below."""
    rows = [("figure", "value", "target", "result")]
    for target in TARGETS:
        if target.section not in sections:
            continue
        value = lookup(results, target.key)
        met = target.check(results)
        shown = "—" if value is None else f"{value:g}{' ' + target.unit if target.unit else ''}"
        verdict = {True: "ok", False: "MISSED", None: ""}[met]
        if value is None and target.bar:
            verdict = "not measured"
        rows.append((target.key, shown, target.bar, verdict))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    sweep = lookup(results, "throughput.by_concurrency")
    if sweep:
        lines.append("")
        lines.append(
            "deliver_alerts --once, deliveries/s by --concurrency: "
            + ", ".join(f"{n}: {rate:g}" for n, rate in sweep.items())
        )
    pg = lookup(results, "throughput.postgres")
    if pg:
        if "skipped" in pg:
            lines.append(f"PostgreSQL: skipped ({pg['skipped']})")
        elif "by_processes" in pg:
            lines.append(
                "PostgreSQL, deliveries/s by worker processes (--concurrency 8 each): "
                + ", ".join(f"{n}: {rate:g}" for n, rate in pg["by_processes"].items())
            )
    skipped = lookup(results, "latency_postgres.skipped")
    if skipped:
        lines.append(f"Latency on PostgreSQL: skipped ({skipped})")
    lines += scale_lines(results)
    health_note = lookup(results, "health.note")
    if health_note:
        lines.append(f"Health page: {health_note}")
    for section, error in (results.get("errors") or {}).items():
        last_line = error.strip().splitlines()[-1] if error.strip() else error
        lines.append(f"ERROR in {section} (details above and in results.json): {last_line}")
    return "\n".join(lines)
