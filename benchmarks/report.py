"""Markdown tables of a results file, for BENCHMARKS.md.

``python -m benchmarks.report benchmarks/results/scale_full.json`` prints the tables.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from benchmarks import notebook, pipeline
from benchmarks.measure import GIB


def _seconds(values: dict[str, Any] | None) -> str:
    if not values or values["median"] is None:
        return "-"
    if values["n"] == 1:
        return f"{values['median']:.1f}"
    return f"{values['median']:.1f} ({values['min']:.1f}-{values['max']:.1f})"


def _gib(values: dict[str, Any] | None) -> str:
    if not values or values["median"] is None:
        return "-"
    return f"{values['max'] / GIB:.2f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def steps_table(by_size: dict[str, Any], steps: tuple[str, ...]) -> list[str]:
    """Return a table with one row per history size: each step, data steps, run, peak RSS."""
    header = ["months of history", "repetitions", *steps, "data steps", "whole run",
              "peak RSS (GiB)"]
    rows = []
    for key in sorted(by_size, key=int):
        size = by_size[key]
        repetitions = str(size["repetitions"])
        if size.get("data_only_repetitions"):
            repetitions += f" (+{size['data_only_repetitions']} of the data steps alone)"
        rows.append([key, repetitions,
                     *(_seconds(size["steps"][step]) for step in steps),
                     _seconds(size["data_steps"]), _seconds(size["whole"]),
                     _gib(size["peak_rss_bytes"])])
    return _table(header, rows)


def step_memory_table(by_size: dict[str, Any], steps: tuple[str, ...]) -> list[str]:
    header = ["months of history", *steps]
    rows = [[key, *(_gib(by_size[key]["step_peak_rss_bytes"][step]) for step in steps)]
            for key in sorted(by_size, key=int)]
    return _table(header, rows)


def scoring_table(by_size: dict[str, Any]) -> list[str]:
    header = ["months of history", "rows", "path", "seconds", "applications/s"]
    rows = []
    for key in sorted(by_size, key=int):
        size = by_size[key]
        for path, rate in size["rates"].items():
            rows.append([key, f"{rate.get('rows', size['rows']):,}", path,
                         f"{rate['seconds']:.2f}", f"{rate['per_second']:,.0f}"])
    return _table(header, rows)


def scoring_parts_table(by_size: dict[str, Any]) -> list[str]:
    parts = sorted({part for size in by_size.values() for part in size["parts"]})
    header = ["months of history", *parts]
    rows = [[key, *(_seconds(by_size[key]["parts"].get(part)) for part in parts)]
            for key in sorted(by_size, key=int)]
    return _table(header, rows)


def targets_table(targets: list[dict[str, Any]]) -> list[str]:
    header = ["target", "where", "measured", "met"]
    rows = []
    for target in targets:
        value = target["measured"]
        if value is None:
            shown = "not measured"
        elif target["unit"] == "bytes":
            shown = f"{value / GIB:.2f} GiB"
        elif target["unit"] == "fraction":
            shown = f"{value:+.0%}"
        elif target["unit"] == "x":
            shown = f"{value:.2f}x"
        elif target["unit"] == "seconds":
            shown = f"{value:.1f} s"
        else:
            shown = f"{value:,.0f} {target['unit']}"
        met = {True: "yes", False: "no", None: "-"}[target["met"]]
        rows.append([target["target"], target["where"], shown, met])
    return _table(header, rows)


def markdown(results: dict[str, Any]) -> str:
    """Return every table of ``results`` as Markdown, with a heading per table."""
    summary = results["summary"]
    sections = [
        ("creditflow, seconds per step: median (min-max)",
         steps_table(summary["creditflow"], pipeline.RUN_STEPS)),
        ("notebook pipeline, seconds per step: median (min-max)",
         steps_table(summary["notebook"], notebook.RUN_STEPS)),
        ("creditflow, peak RSS per step (GiB, largest over repetitions)",
         step_memory_table(summary["creditflow"], pipeline.RUN_STEPS)),
        ("notebook pipeline, peak RSS per step (GiB, largest over repetitions)",
         step_memory_table(summary["notebook"], notebook.RUN_STEPS)),
        ("scoring rates", scoring_table(summary["scoring"])),
        ("scoring parts, seconds: median (min-max)", scoring_parts_table(summary["scoring"])),
        ("targets", targets_table(results["targets"])),
    ]
    lines = []
    for title, table in sections:
        lines += [f"#### {title}", "", *table, ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if len(arguments) != 1:
        sys.stderr.write("usage: python -m benchmarks.report RESULTS.json\n")
        return 2
    sys.stdout.write(markdown(json.loads(Path(arguments[0]).read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
