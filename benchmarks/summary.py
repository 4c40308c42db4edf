"""Medians, spreads, scoring rates and target checks computed from the raw measurements.

A measurement (``run``) is one child process: ``{"kind", "size", "repetition", "ok", "result"}``
with ``kind`` one of ``month`` (creditflow's monthly run), ``notebook`` (the baseline) and
``scoring`` (the parts of scoring), and ``size`` the months of history before the scored month.
"""

from __future__ import annotations

import statistics
from typing import Any

from benchmarks import notebook, pipeline
from benchmarks.measure import GIB

# Targets the monthly run has to reach; BENCHMARKS.md gives the reason for each.
DATA_STEPS_SPEEDUP = 5.0
HISTORY_GROWTH = 0.25
SCORING_PLAIN_PER_SECOND = 100_000
SCORING_REASONS_PER_SECOND = 20_000
PEAK_MEMORY_BYTES = 8 * GIB
GATE_SECONDS = 10.0

# Parts of scoring timed by benchmarks.pipeline.measure_scoring, and the paths they make up.
SCORING_PATHS = {
    # Encoded matrix in memory to probabilities and decisions.
    "pure_probabilities_decisions": ("predict", "decide"),
    # From the feature table to rows in the predictions table.
    "table_probabilities_decisions": ("read_features", "encode", "predict", "decide",
                                      "write_without_reasons"),
}


def stats(values: list[float]) -> dict[str, Any]:
    """Return the median, minimum, maximum and spread ((max - min) / median) of ``values``."""
    if not values:
        return {"n": 0, "median": None, "min": None, "max": None, "spread": None, "values": []}
    median = statistics.median(values)
    spread = (max(values) - min(values)) / median if len(values) > 1 and median else None
    return {"n": len(values), "median": median, "min": min(values), "max": max(values),
            "spread": spread, "values": list(values)}


def _successful(runs: list[dict[str, Any]], kind: str, size: int) -> list[dict[str, Any]]:
    return [run for run in runs if run["kind"] == kind and run["size"] == size and run["ok"]]


def summarize_runs(runs: list[dict[str, Any]], steps: tuple[str, ...],
                   data_steps: tuple[str, ...]) -> dict[str, Any]:
    """Summarize the successful runs of one pipeline at one size, step by step.

    Runs of the data steps only (``data_only``) count for those steps and the data-step total;
    the whole run and its peak memory come from the complete runs.
    """
    results = [run["result"] for run in runs]
    complete = [r for r in results if not r.get("data_only")]

    def values(step: str, field: str) -> list[float]:
        return [r["steps"][step][field] for r in results if step in r["steps"]]

    return {
        "repetitions": len(complete),
        "data_only_repetitions": len(results) - len(complete),
        "steps": {step: stats(values(step, "seconds")) for step in steps},
        "step_peak_rss_bytes": {step: stats(values(step, "peak_rss_bytes")) for step in steps},
        "data_steps": stats([sum(r["steps"][step]["seconds"] for step in data_steps)
                             for r in results]),
        "whole": stats([r["whole_seconds"] for r in complete]),
        "peak_rss_bytes": stats([r["peak_rss_bytes"] for r in complete]),
    }


def summarize_scoring(runs: list[dict[str, Any]], months: list[dict[str, Any]]
                      ) -> dict[str, Any]:
    """Pool the scoring samples of ``runs`` and turn them into applications per second.

    ``months`` are the monthly runs of the same size: their score step is
    ``ml.service.score_month`` as the flow calls it, from the feature table to the predictions
    table with reason codes (model load included). Reason codes alone were timed on a slice of
    ``reason_rows`` rows.
    """
    samples: dict[str, list[float]] = {}
    for run in runs:
        for part, seconds in run["result"]["seconds"].items():
            samples.setdefault(part, []).extend(seconds)
    rows = runs[0]["result"]["rows"] if runs else 0
    parts = {part: stats(values) for part, values in samples.items()}
    rates = {}
    for path, members in SCORING_PATHS.items():
        if all(parts.get(member, {}).get("median") for member in members):
            seconds = sum(parts[member]["median"] for member in members)
            rates[path] = {"seconds": seconds, "per_second": rows / seconds}
    reason_rows = runs[0]["result"].get("reason_rows", rows) if runs else 0
    if parts.get("reason_codes", {}).get("median"):
        seconds = parts["reason_codes"]["median"]
        rates["reason_codes_only"] = {"seconds": seconds, "per_second": reason_rows / seconds,
                                      "rows": reason_rows}
    adverse_action = parts.get("score_month_not_approved_reasons", {}).get("median")
    if adverse_action:
        rates["score_month_not_approved_reasons"] = {"seconds": adverse_action,
                                                     "per_second": rows / adverse_action}
    score_steps = stats([run["result"]["steps"]["score"]["seconds"] for run in months
                         if "score" in run["result"]["steps"]])
    if score_steps["median"]:
        parts["score_month"] = score_steps
        rates["score_month"] = {"seconds": score_steps["median"],
                                "per_second": rows / score_steps["median"]}
    return {"rows": rows, "samples": sum(len(run["result"]["seconds"].get("predict", []))
                                         for run in runs),
            "parts": parts, "rates": rates}


def summarize(runs: list[dict[str, Any]], sizes: list[int]) -> dict[str, Any]:
    """Summarize every size measured so far; sizes without a successful run are left out."""
    summary: dict[str, dict[str, Any]] = {"creditflow": {}, "notebook": {}, "scoring": {}}
    for size in sizes:
        key = str(size)
        months = _successful(runs, "month", size)
        if months:
            summary["creditflow"][key] = summarize_runs(months, pipeline.RUN_STEPS,
                                                        pipeline.DATA_STEPS)
        notebooks = _successful(runs, "notebook", size)
        if notebooks:
            summary["notebook"][key] = summarize_runs(notebooks, notebook.RUN_STEPS,
                                                      notebook.DATA_STEPS)
        scorings = _successful(runs, "scoring", size)
        if scorings:
            summary["scoring"][key] = summarize_scoring(scorings, months)
    return summary


def _median(summary: dict[str, Any], side: str, size: int, *path: str) -> float | None:
    value: Any = summary[side].get(str(size))
    for key in path:
        if value is None:
            return None
        value = value.get(key)
    return value


def _target(name: str, text: str, measured: float | None, limit: float, at_least: bool,
            unit: str, where: str) -> dict[str, Any]:
    met = None
    if measured is not None:
        met = measured >= limit if at_least else measured <= limit
    return {"name": name, "target": text, "limit": limit, "measured": measured, "unit": unit,
            "met": met, "where": where}


def check_targets(summary: dict[str, Any], sizes: list[int],
                  history_gate: list[float] | None = None) -> list[dict[str, Any]]:
    """Check the five targets on the largest size (and on the one before it for growth).

    ``measured`` is None when the sizes needed were not measured (for example a run cut short).
    """
    largest = max(sizes)
    smaller = sorted(size for size in sizes if size < largest)
    middle = smaller[-1] if smaller else None
    targets = []

    ours = _median(summary, "creditflow", largest, "data_steps", "median")
    theirs = _median(summary, "notebook", largest, "data_steps", "median")
    targets.append(_target(
        "data_steps_speedup", f"data steps at least {DATA_STEPS_SPEEDUP:g}x faster than the "
        "notebook", theirs / ours if ours and theirs else None, DATA_STEPS_SPEEDUP, True, "x",
        f"{largest} months of history"))

    before = _median(summary, "creditflow", middle, "data_steps", "median") if middle else None
    targets.append(_target(
        "history_growth", f"ingest + dbt build grows at most {HISTORY_GROWTH:.0%} from "
        f"{middle} to {largest} months", ours / before - 1 if ours and before else None,
        HISTORY_GROWTH, False, "fraction", f"{middle} -> {largest} months of history"))

    rates = (summary["scoring"].get(str(largest)) or {}).get("rates", {})
    plain = rates.get("table_probabilities_decisions", {}).get("per_second")
    explained = rates.get("score_month", {}).get("per_second")
    targets.append(_target(
        "scoring_probabilities_decisions", f"at least {SCORING_PLAIN_PER_SECOND:,} applications/s "
        "scored into the table (probabilities and decisions)", plain, SCORING_PLAIN_PER_SECOND,
        True, "applications/s", f"{largest} months of history"))
    targets.append(_target(
        "scoring_reason_codes", f"at least {SCORING_REASONS_PER_SECOND:,} applications/s scored "
        "into the table with reason codes (the run's score step)", explained,
        SCORING_REASONS_PER_SECOND, True, "applications/s", f"{largest} months of history"))

    peak = _median(summary, "creditflow", largest, "peak_rss_bytes", "max")
    targets.append(_target(
        "peak_memory", "peak memory of the whole run under 8 GiB", peak, PEAK_MEMORY_BYTES, False,
        "bytes", f"{largest} months of history (largest over repetitions)"))

    gates = [_median(summary, "creditflow", size, "steps", "ingest_gate", "median")
             for size in sizes]
    gates = [value for value in gates if value is not None]
    if history_gate:
        gates.append(statistics.median(history_gate))
    targets.append(_target(
        "gate_seconds", f"gate on one month's file in at most {GATE_SECONDS:g} s",
        max(gates) if gates else None, GATE_SECONDS, False, "seconds",
        "slowest median over the history sizes and the history loads"))
    return targets
