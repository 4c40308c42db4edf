"""Benchmark harness: creditflow's monthly run against the notebook pipeline, by history size.

For each history size N (months already loaded before the scored month) the harness

1. generates ``initial.csv`` and the monthly files with :func:`flows.generator.generate_files`,
   every file ``rows`` applications (307,511 at full size, the public ``application_train.csv``),
2. loads the history once (``initial.csv`` plus N - 1 monthly files) and keeps a copy of that
   deployment as the starting point of every repetition,
3. per repetition, runs creditflow's month N (ingest + gate, dbt build, train, score,
   monitoring) on a copy of that deployment and then times the parts of scoring on the result.
   It then runs the notebook pipeline on the same N + 1 files. Each of the three runs in a new
   child process.

Results are rewritten to the JSON file after every measurement, so a run cut short keeps what
it measured. Generated files and deployments go under ``--data-dir`` (default under /tmp).

Quick mode (small files) checks that the harness works; only full mode gives numbers to report::

    python -m benchmarks.harness --mode quick
    python -m benchmarks.harness --mode full --stop-at 22:05
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.measure import machine_facts, write_json
from benchmarks.summary import check_targets, summarize
from flows.months import HISTORY, month_range

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
FIRST_MONTH = "2020-01"
# Rows of the public Home Credit application_train.csv: the size of one month at full scale.
HOME_CREDIT_ROWS = 307_511
SNAPSHOT_MARK = "benchmark-snapshot.json"


@dataclass(frozen=True)
class Config:
    """Sizes, rows, repetitions and training settings of one harness run."""

    mode: str
    sizes: tuple[int, ...]
    rows: int
    repetitions: int
    # Extra runs of the data steps alone, after the complete repetitions.
    data_repetitions: int
    trials: int
    max_rounds: int
    scoring_repetitions: int
    seed: int


MODES = {
    "quick": Config("quick", sizes=(1, 2, 3), rows=2_000, repetitions=3, data_repetitions=1,
                    trials=2, max_rounds=50, scoring_repetitions=3, seed=20201),
    "full": Config("full", sizes=(1, 5, 10), rows=HOME_CREDIT_ROWS, repetitions=3,
                   data_repetitions=4, trials=2, max_rounds=30, scoring_repetitions=3,
                   seed=20201),
}


# --- child processes ------------------------------------------------------------------------

def run_child(task: dict[str, Any], label: str, work: Path) -> dict[str, Any]:
    """Run ``task`` in a new Python process; return its result, wall time and exit status.

    The child's log goes to ``work/logs/<label>.log``; a failure keeps its last lines.
    """
    for folder in ("tasks", "logs"):
        (work / folder).mkdir(parents=True, exist_ok=True)
    task_path = work / "tasks" / f"{label}.json"
    result_path = work / "tasks" / f"{label}.result.json"
    log_path = work / "logs" / f"{label}.log"
    task_path.write_text(json.dumps(task, indent=2))
    result_path.unlink(missing_ok=True)
    logger.info("%s: started (log: %s)", label, log_path)
    started = time.perf_counter()
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.child", str(task_path), str(result_path)],
            cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    record: dict[str, Any] = {"label": label, "wall_seconds": seconds,
                              "returncode": process.returncode,
                              # Lowered by the child's per-step peak resets: see measure.py.
                              "rusage_maxrss_bytes": usage.ru_maxrss * 1024,
                              # Shows whether other work shared the machine meanwhile.
                              "load_average_after": list(os.getloadavg()),
                              "ok": process.returncode == 0 and result_path.exists()}
    if record["ok"]:
        record["result"] = json.loads(result_path.read_text())
        logger.info("%s: finished in %.1f s", label, seconds)
    else:
        lines = log_path.read_text(errors="replace").splitlines()
        record["error"] = "\n".join(lines[-25:])
        killed = " (killed by a signal: out of memory?)" if process.returncode < 0 else ""
        logger.error("%s: failed with exit status %s%s after %.1f s; last lines of %s:\n%s",
                     label, process.returncode, killed, seconds, log_path, record["error"])
    return record


# --- data and history -----------------------------------------------------------------------

def generate_data(config: Config, folder: Path) -> dict[str, Any]:
    """Generate (or reuse) ``initial.csv`` and ``max(sizes)`` monthly files in ``folder``."""
    from flows.generator import generate_files

    months = month_range(FIRST_MONTH, _month_after(FIRST_MONTH, max(config.sizes) - 1))
    requested = {"months": months, "rows": config.rows, "seed": config.seed}
    manifest = folder / "manifest.json"
    if manifest.exists():
        earlier = json.loads(manifest.read_text())
        made = earlier.get("requested", {})
        # Files made for more months contain the ones requested: same seed, same bytes.
        if (made.get("rows"), made.get("seed")) == (config.rows, config.seed) and \
                made.get("months", [])[:len(months)] == months:
            logger.info("reusing the generated files in %s", folder)
            return earlier
    shutil.rmtree(folder, ignore_errors=True)
    started = time.perf_counter()
    paths = generate_files(folder, months, history_rows=config.rows,
                           rows_per_month=config.rows, seed=config.seed)
    facts = {"requested": requested, "seconds": time.perf_counter() - started,
             "files": [{"path": str(path), "bytes": path.stat().st_size} for path in paths]}
    manifest.write_text(json.dumps(facts, indent=2))
    logger.info("generated %d files of %d rows in %.1f s", len(paths), config.rows,
                facts["seconds"])
    return facts


def _month_after(month: str, count: int) -> str:
    year, number = int(month[:4]), int(month[5:7]) - 1 + count
    return f"{year + number // 12:04d}-{number % 12 + 1:02d}"


def month_files(data: dict[str, Any]) -> list[tuple[str, Path]]:
    """Return (month, path) of the generated files in order: history first."""
    return [(HISTORY, Path(data["files"][0]["path"]))] + [
        (month, Path(item["path"])) for month, item in zip(
            data["requested"]["months"], data["files"][1:], strict=True)]


def prepare_histories(config: Config, files: list[tuple[str, Path]], work: Path,
                      results: dict[str, Any], save: Any) -> dict[int, Path]:
    """Load the history of every size once, keeping a copy per size; return size -> copy.

    Sizes are loaded in increasing order into one deployment, so each month is ingested once.
    A copy whose mark matches the files is reused from an earlier harness run.
    """
    setup_home = deployment_home(work)
    loaded = 0
    snapshots = {}
    for size in sorted(config.sizes):
        snapshot = work / f"history-{size}"
        mark = {"files": [str(path) for _, path in files[:size]], "rows": config.rows}
        snapshots[size] = snapshot
        if (snapshot / SNAPSHOT_MARK).exists() and \
                json.loads((snapshot / SNAPSHOT_MARK).read_text()) == mark:
            logger.info("reusing the history of %d month(s) in %s", size, snapshot)
            shutil.rmtree(setup_home, ignore_errors=True)
            shutil.copytree(snapshot, setup_home)
            loaded = size
            continue
        if loaded == 0:
            shutil.rmtree(setup_home, ignore_errors=True)
        task = {"kind": "history", "home": str(setup_home),
                "files": [{"path": str(path), "month": month}
                          for month, path in files[loaded:size]]}
        record = run_child(task, f"history-{size}", work)
        record.update(kind="history", size=size)
        results["setup"].append(record)
        save()
        if not record["ok"]:
            raise RuntimeError(f"loading the history of {size} month(s) failed: see "
                               f"{work / 'logs' / f'history-{size}.log'}")
        loaded = size
        shutil.rmtree(snapshot, ignore_errors=True)
        # The landed originals are not read by a monthly run; leaving them out keeps copies fast.
        shutil.copytree(setup_home, snapshot, ignore=shutil.ignore_patterns("landed"))
        (snapshot / SNAPSHOT_MARK).write_text(json.dumps(mark))
    return snapshots


def deployment_home(work: Path) -> Path:
    """Return the deployment folder of both the history loads and the measured runs.

    One path for both keeps dbt's partial parsing valid: dbt parses the whole project again
    when the profile (which contains the warehouse path) changed since the last parse.
    """
    return work / "home"


def history_gate_seconds(results: dict[str, Any]) -> list[float]:
    """Return the ingest times of the history files loaded in this harness run."""
    seconds = []
    for record in results["setup"]:
        for name, step in record.get("result", {}).get("steps", {}).items():
            if name.startswith("ingest_gate_"):
                seconds.append(step["seconds"])
    return seconds


# --- measurements ---------------------------------------------------------------------------

def measure_size(config: Config, size: int, repetition: int, files: list[tuple[str, Path]],
                 snapshot: Path, work: Path, keep: Callable[[dict[str, Any]], None]) -> None:
    """Measure creditflow's month and the notebook for one size, once each.

    The parts of scoring are timed at the largest size only: the scored month has the same
    rows at every size, and timing reason codes on a full month takes minutes. Each
    measurement goes to ``keep`` as soon as it ends.
    """
    month, path = files[size]
    common = {"trials": config.trials, "max_rounds": config.max_rounds}
    facts = {"size": size, "repetition": repetition}

    home = deployment_home(work)
    shutil.rmtree(home, ignore_errors=True)
    shutil.copytree(snapshot, home)
    try:
        task = {"kind": "month", "home": str(home), "path": str(path), "month": month,
                **common}
        record = run_child(task, f"month-{size}-r{repetition}", work) | facts
        keep(record | {"kind": "month"})
        if record["ok"] and size == max(config.sizes):
            task = {"kind": "scoring", "home": str(home), "month": month,
                    "repetitions": config.scoring_repetitions, **common}
            record = run_child(task, f"scoring-{size}-r{repetition}", work) | facts
            keep(record | {"kind": "scoring"})
    finally:
        shutil.rmtree(home, ignore_errors=True)

    task = {"kind": "notebook", "files": [str(p) for _, p in files[:size + 1]],
            "out_csv": str(work / "notebook-predictions.csv"), **common}
    record = run_child(task, f"notebook-{size}-r{repetition}", work) | facts
    keep(record | {"kind": "notebook"})


def measure_data_steps(config: Config, size: int, repetition: int,
                       files: list[tuple[str, Path]], snapshot: Path, work: Path,
                       keep: Callable[[dict[str, Any]], None]) -> None:
    """Measure creditflow's data steps alone for one size, once."""
    month, path = files[size]
    home = deployment_home(work)
    shutil.rmtree(home, ignore_errors=True)
    shutil.copytree(snapshot, home)
    try:
        task = {"kind": "month", "home": str(home), "path": str(path), "month": month,
                "data_only": True, "trials": config.trials, "max_rounds": config.max_rounds}
        record = run_child(task, f"data-{size}-r{repetition}", work)
        keep(record | {"kind": "month", "size": size, "repetition": repetition,
                       "data_only": True})
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _expected_seconds(runs: list[dict[str, Any]], size: int) -> float | None:
    same = [run["wall_seconds"] for run in runs
            if run["size"] == size and not run.get("data_only")]
    return sum(same) / max(1, len({run["repetition"] for run in runs if run["size"] == size})) \
        if same else None


def _stop_time(text: str | None) -> datetime | None:
    if not text:
        return None
    hour, minute = (int(part) for part in text.split(":"))
    now = datetime.now(UTC)
    deadline = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    # A time of day earlier than now is tomorrow's: 01:00 given at 23:30 is 90 minutes away.
    return deadline + timedelta(days=1) if deadline <= now else deadline


# Settings that must match for measurements to be appended to an earlier results file.
_COMPARABLE = ("rows", "trials", "max_rounds", "seed")


def start_results(config: Config, out: Path, command: str, append: bool) -> dict[str, Any]:
    """Return new results, or with ``append`` the earlier results in ``out`` to add to.

    Raises ValueError when the earlier results were measured with other rows, trials, rounds
    or seed, because their numbers would not be comparable.
    """
    if append and out.exists():
        results = json.loads(out.read_text())
        earlier = results["config"]
        different = [name for name in _COMPARABLE if earlier[name] != getattr(config, name)]
        if different:
            raise ValueError(f"cannot append to {out}: it was measured with other "
                             f"{', '.join(different)}; use the same values or another --out")
        earlier["sizes"] = sorted(set(earlier["sizes"]) | set(config.sizes))
        results["commands"] = [*results.get("commands", [results["command"]]), command]
        results["finished"] = False
        return results
    return {
        "benchmark": "creditflow monthly run versus the notebook pipeline, by history size",
        "command": command,
        "commands": [command],
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "finished": False,
        "config": asdict(config),
        "machine": machine_facts(REPO_ROOT),
        "generation": None,
        "setup": [],
        "runs": [],
        "skipped": [],
    }


def run(config: Config, work: Path, out: Path, chart: Path | None, stop_at: str | None,
        command: str, append: bool = False) -> dict[str, Any]:
    """Run the whole benchmark; return the results (also written to ``out`` as they come)."""
    work.mkdir(parents=True, exist_ok=True)
    deadline = _stop_time(stop_at)
    results = start_results(config, out, command, append)
    # With --append, the summary covers the earlier sizes too.
    sizes = list(results["config"]["sizes"])

    def save() -> None:
        results["updated_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        results["summary"] = summarize(results["runs"], sizes)
        results["targets"] = check_targets(results["summary"], sizes,
                                           history_gate_seconds(results))
        write_json(out, results)
        if chart is not None and results["runs"]:
            from benchmarks.chart import draw_chart

            draw_chart(results, chart)

    def keep(record: dict[str, Any]) -> None:
        results["runs"].append(record)
        save()

    data = generate_data(config, work / "files")
    results["generation"] = results["generation"] or data
    save()
    files = month_files(data)
    snapshots = prepare_histories(config, files, work, results, save)

    # With --append, repetitions are numbered on from the earlier ones.
    first = max((run["repetition"] for run in results["runs"] if not run.get("data_only")),
                default=0)
    for repetition in range(first + 1, first + config.repetitions + 1):
        # Largest first: the targets are checked on the two largest sizes.
        for size in sorted(config.sizes, reverse=True):
            expected = _expected_seconds(results["runs"], size)
            if deadline and expected and time.time() + expected > deadline.timestamp():
                logger.warning("size %d, repetition %d skipped: it would end after %s UTC "
                               "(about %.0f s)", size, repetition, stop_at, expected)
                results["skipped"].append({"size": size, "repetition": repetition,
                                           "reason": f"would end after --stop-at {stop_at}"})
                continue
            measure_size(config, size, repetition, files, snapshots[size], work, keep)

    first = max((run["repetition"] for run in results["runs"] if run.get("data_only")),
                default=0)
    for repetition in range(first + 1, first + config.data_repetitions + 1):
        for size in sorted(config.sizes, reverse=True):
            earlier = [run["wall_seconds"] for run in results["runs"]
                       if run["size"] == size and run.get("data_only")]
            # Before the first data-only run of a size, assume five minutes.
            expected = max(earlier) if earlier else 300.0
            if deadline and time.time() + expected > deadline.timestamp():
                logger.warning("data steps of size %d, repetition %d skipped: they would end "
                               "after %s UTC", size, repetition, stop_at)
                results["skipped"].append({"size": size, "data_repetition": repetition,
                                           "reason": f"would end after --stop-at {stop_at}"})
                continue
            measure_data_steps(config, size, repetition, files, snapshots[size], work, keep)

    results["finished"] = True
    save()
    return results


def parse_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(sorted({int(part) for part in text.split(",")}))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"invalid sizes {text!r}: give months of history "
                                         "separated by commas, e.g. 1,5,10") from error
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError(f"invalid sizes {text!r}: each size is 1 or more")
    return sizes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.harness", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=sorted(MODES), default="quick",
                        help="preset of sizes, rows, repetitions and trials (default: quick)")
    parser.add_argument("--sizes", type=parse_sizes,
                        help="months of history before the scored month, e.g. 1,5,10")
    parser.add_argument("--rows", type=int, help="applications per file")
    parser.add_argument("--repetitions", type=int, help="repetitions of every measurement")
    parser.add_argument("--data-repetitions", type=int,
                        help="extra runs of creditflow's data steps alone, per size")
    parser.add_argument("--trials", type=int, help="Optuna trials of both trainings")
    parser.add_argument("--max-rounds", type=int,
                        help="boosting rounds per trial and refit, at most, in both pipelines")
    parser.add_argument("--data-dir", type=Path,
                        help="folder of generated files and deployments (default: a folder "
                             "under the system's temporary directory)")
    parser.add_argument("--out", type=Path,
                        help="results JSON (default: benchmarks/results/scale_<mode>.json)")
    parser.add_argument("--chart", type=Path,
                        help="chart PNG (default: next to the results JSON)")
    parser.add_argument("--stop-at", metavar="HH:MM",
                        help="UTC time of day: a measurement that would end later is skipped")
    parser.add_argument("--append", action="store_true",
                        help="add the measurements to the results already in --out (same rows, "
                             "trials, rounds and seed) instead of replacing them")
    parser.add_argument("--keep-data", action="store_true",
                        help="keep the generated files and deployments after the run")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    preset = MODES[args.mode]
    overrides = {name: value for name, value in (
        ("sizes", args.sizes), ("rows", args.rows), ("repetitions", args.repetitions),
        ("data_repetitions", args.data_repetitions),
        ("trials", args.trials), ("max_rounds", args.max_rounds)) if value is not None}
    config = Config(**{**asdict(preset), **overrides})
    out = args.out or RESULTS_DIR / f"scale_{config.mode}.json"
    chart = args.chart or out.with_suffix(".png")
    work = args.data_dir or Path(tempfile.gettempdir()) / f"creditflow-bench-{config.mode}"
    command = shlex.join(["python", "-m", "benchmarks.harness",
                          *(sys.argv[1:] if argv is None else argv)])
    try:
        run(config, work, out, chart, args.stop_at, command, append=args.append)
    finally:
        if not args.keep_data:
            shutil.rmtree(work, ignore_errors=True)
    logger.info("results written to %s and %s", out, chart)
    return 0


if __name__ == "__main__":
    sys.exit(main())
