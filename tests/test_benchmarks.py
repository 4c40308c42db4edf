"""The benchmark harness in quick mode, and the arithmetic behind its tables and targets.

These tests check that the harness runs and reports what it measured; they assert nothing about
speed (the numbers live in BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from benchmarks import harness, report
from benchmarks.measure import GIB, StepTimer, peak_rss_bytes, reset_peak_rss
from benchmarks.summary import check_targets, stats, summarize

QUICK_ROWS = 600


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """Results of one quick harness run: one history size, one repetition, one trial."""
    folder = tmp_path_factory.mktemp("benchmark")
    out = folder / "results.json"
    code = harness.main([
        "--mode", "quick", "--sizes", "1", "--rows", str(QUICK_ROWS), "--repetitions", "1",
        "--trials", "1", "--max-rounds", "10", "--data-dir", str(folder / "work"),
        "--out", str(out),
    ])
    assert code == 0
    return json.loads(out.read_text()), folder


@pytest.mark.slow
def test_quick_run_measures_every_step(quick_results: tuple[dict, Path]) -> None:
    results, _ = quick_results
    assert results["finished"] is True
    kinds = sorted(run["kind"] for run in results["runs"])
    assert kinds == ["month", "month", "notebook", "scoring"]
    failed = [run["label"] for run in results["runs"] if not run["ok"]]
    assert failed == []

    month = next(run for run in results["runs"]
                 if run["kind"] == "month" and not run.get("data_only"))["result"]
    assert list(month["steps"]) == ["ingest_gate", "dbt_build", "train", "score", "monitoring"]
    assert month["steps"]["ingest_gate"]["rows"] == QUICK_ROWS
    assert month["steps"]["score"]["rows"] == QUICK_ROWS
    assert all(step["seconds"] > 0 for step in month["steps"].values())
    assert month["whole_seconds"] >= sum(step["seconds"] for step in month["steps"].values())
    assert month["peak_rss_bytes"] >= max(step["peak_rss_bytes"]
                                          for step in month["steps"].values())

    notebook = next(run for run in results["runs"] if run["kind"] == "notebook")["result"]
    assert notebook["steps"]["concat"]["rows"] == 2 * QUICK_ROWS
    assert notebook["steps"]["score"]["rows"] == QUICK_ROWS


@pytest.mark.slow
def test_quick_run_records_machine_and_setup(quick_results: tuple[dict, Path]) -> None:
    results, _ = quick_results
    machine = results["machine"]
    assert machine["logical_cores"] >= 1
    assert machine["packages"]["duckdb"]
    assert results["command"].startswith("python -m benchmarks.harness --mode quick")
    assert results["config"]["rows"] == QUICK_ROWS
    assert [record["ok"] for record in results["setup"]] == [True]
    assert len(results["generation"]["files"]) == 2


@pytest.mark.slow
def test_quick_run_summary_and_chart(quick_results: tuple[dict, Path]) -> None:
    results, folder = quick_results
    summary = results["summary"]
    assert summary["creditflow"]["1"]["repetitions"] == 1
    assert summary["creditflow"]["1"]["data_only_repetitions"] == 1
    assert summary["creditflow"]["1"]["steps"]["dbt_build"]["n"] == 2
    assert summary["creditflow"]["1"]["steps"]["train"]["n"] == 1
    assert summary["notebook"]["1"]["repetitions"] == 1
    scoring = summary["scoring"]["1"]
    assert scoring["rows"] == QUICK_ROWS
    assert scoring["samples"] == 3
    assert scoring["rates"]["table_probabilities_decisions"]["per_second"] > 0
    assert scoring["rates"]["score_month"]["per_second"] > 0
    assert scoring["rates"]["reason_codes_only"]["rows"] == QUICK_ROWS
    assert len(scoring["parts"]["reason_codes"]["values"]) == 1
    assert scoring["rates"]["score_month_not_approved_reasons"]["per_second"] > 0
    assert len(scoring["parts"]["score_month_not_approved_reasons"]["values"]) == 1

    names = [target["name"] for target in results["targets"]]
    assert names == ["data_steps_speedup", "history_growth", "scoring_probabilities_decisions",
                     "scoring_reason_codes", "peak_memory", "gate_seconds"]
    growth = next(t for t in results["targets"] if t["name"] == "history_growth")
    assert growth["measured"] is None  # one size only: no growth to measure

    chart = folder / "results.png"
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (folder / "work").exists()
    assert "| 1 | 1 |" in report.markdown(results)


def _run(kind: str, size: int, seconds: dict[str, float], peak: float = GIB) -> dict:
    steps = {name: {"seconds": value, "peak_rss_bytes": peak} for name, value in seconds.items()}
    return {"kind": kind, "size": size, "repetition": 1, "ok": True,
            "result": {"steps": steps, "whole_seconds": sum(seconds.values()),
                       "peak_rss_bytes": peak}}


def _month(size: int, ingest: float, build: float, peak: float = GIB) -> dict:
    return _run("month", size, {"ingest_gate": ingest, "dbt_build": build, "train": 30.0,
                                "score": 5.0, "monitoring": 4.0}, peak)


def _notebook(size: int, read: float) -> dict:
    return _run("notebook", size, {"read_csv": read, "concat": 1.0, "prepare": 4.0,
                                   "train": 40.0, "score": 2.0})


def _scoring(size: int, rows: int, seconds: float) -> dict:
    parts = ("read_features", "encode", "predict", "decide", "reason_codes",
             "write_without_reasons")
    return {"kind": "scoring", "size": size, "repetition": 1, "ok": True,
            "result": {"rows": rows, "seconds": {part: [seconds] for part in parts}}}


def test_not_approved_reasons_rate() -> None:
    run = _scoring(10, 1000, 0.001)
    run["result"]["seconds"]["score_month_not_approved_reasons"] = [0.5]
    rates = summarize(runs=[run], sizes=[10])["scoring"]["10"]["rates"]
    assert rates["score_month_not_approved_reasons"]["per_second"] == pytest.approx(2000)
    assert "score_month_not_approved_reasons" not in \
        summarize(runs=[_scoring(10, 1000, 0.001)], sizes=[10])["scoring"]["10"]["rates"]


def test_stats_median_and_spread() -> None:
    result = stats([4.0, 2.0, 3.0])
    assert result["median"] == 3.0
    assert (result["min"], result["max"]) == (2.0, 4.0)
    assert result["spread"] == pytest.approx(2.0 / 3.0)
    assert stats([5.0])["spread"] is None
    assert stats([])["median"] is None


def test_targets_from_known_numbers() -> None:
    runs = [_month(5, 4.0, 16.0), _month(10, 5.0, 20.0, peak=9 * GIB),
            _notebook(10, 120.0), _scoring(10, 1000, 0.001)]
    targets = {t["name"]: t for t in check_targets(summarize(runs, [5, 10]), [5, 10], [12.0])}

    # Notebook data steps 120 + 1 + 4 = 125 s against 5 + 20 = 25 s.
    assert targets["data_steps_speedup"]["measured"] == pytest.approx(5.0)
    assert targets["data_steps_speedup"]["met"] is True
    assert targets["history_growth"]["measured"] == pytest.approx(0.25)
    assert targets["history_growth"]["met"] is True
    # Five parts of 1 ms for 1,000 rows; with reason codes, the run's 5 s score step.
    assert targets["scoring_probabilities_decisions"]["measured"] == pytest.approx(200_000)
    assert targets["scoring_reason_codes"]["measured"] == pytest.approx(1000 / 5.0)
    assert targets["peak_memory"]["met"] is False
    # The history loads' median (12 s) is slower than the monthly runs' gate.
    assert targets["gate_seconds"]["measured"] == 12.0
    assert targets["gate_seconds"]["met"] is False


def test_targets_missing_sizes_unmeasured() -> None:
    targets = check_targets(summarize([_month(1, 1.0, 2.0)], [1, 10]), [1, 10])
    by_name = {t["name"]: t for t in targets}
    assert by_name["data_steps_speedup"]["measured"] is None
    assert by_name["data_steps_speedup"]["met"] is None
    assert by_name["peak_memory"]["measured"] is None


def test_failed_runs_left_out_of_summary() -> None:
    failed = _month(1, 100.0, 100.0) | {"ok": False}
    summary = summarize([failed, _month(1, 1.0, 2.0)], [1])
    assert summary["creditflow"]["1"]["repetitions"] == 1
    assert summary["creditflow"]["1"]["data_steps"]["median"] == 3.0


def test_data_only_runs_count_for_data_steps() -> None:
    data_only = _month(1, 2.0, 4.0)
    for step in ("train", "score", "monitoring"):
        del data_only["result"]["steps"][step]
    data_only["result"].update(data_only=True, whole_seconds=None)
    summary = summarize([_month(1, 1.0, 2.0), data_only], [1])["creditflow"]["1"]
    assert summary["repetitions"] == 1
    assert summary["data_only_repetitions"] == 1
    assert summary["data_steps"]["median"] == 4.5
    assert summary["steps"]["train"]["n"] == 1
    assert summary["whole"]["median"] == 42.0


def test_markdown_tables_show_targets() -> None:
    runs = [_month(1, 1.0, 2.0), _notebook(1, 3.0), _scoring(1, 500, 0.01)]
    results = {"summary": summarize(runs, [1]), "targets": check_targets(
        summarize(runs, [1]), [1])}
    text = report.markdown(results)
    assert "| 1 | 1 | 1.0 | 2.0 | 30.0 | 5.0 | 4.0 | 3.0 | 42.0 | 1.00 |" in text
    assert "not measured" in text


def test_parse_sizes_rejects_bad_input() -> None:
    assert harness.parse_sizes("10,1,5,5") == (1, 5, 10)
    with pytest.raises(argparse.ArgumentTypeError, match="1 or more"):
        harness.parse_sizes("0,5")
    with pytest.raises(argparse.ArgumentTypeError, match="separated by commas"):
        harness.parse_sizes("five")


def test_append_keeps_earlier_runs(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    config = harness.MODES["quick"]
    first = harness.start_results(config, out, "first", append=False)
    first["runs"].append(_month(3, 1.0, 2.0))
    out.write_text(json.dumps(first))

    smaller = harness.Config(**{**harness.asdict(config), "sizes": (5,)})
    appended = harness.start_results(smaller, out, "second", append=True)
    assert appended["runs"] == first["runs"]
    assert appended["commands"] == ["first", "second"]
    assert appended["config"]["sizes"] == [1, 2, 3, 5]

    other = harness.Config(**{**harness.asdict(config), "trials": 7})
    with pytest.raises(ValueError, match="other trials"):
        harness.start_results(other, out, "third", append=True)


def test_month_after_crosses_year() -> None:
    assert harness._month_after("2020-01", 9) == "2020-10"
    assert harness._month_after("2020-11", 3) == "2021-02"


def test_step_timer_peak_covers_allocation() -> None:
    if not reset_peak_rss():
        pytest.skip("this system cannot reset the peak RSS (/proc/self/clear_refs)")
    timer = StepTimer()
    size = 200 * 1024 * 1024
    with timer.step("allocate"):
        block = bytearray(size)
        block[::4096] = b"x" * len(block[::4096])
    del block
    with timer.step("idle"):
        pass
    allocate = timer.steps["allocate"]
    assert allocate["peak_rss_bytes"] - allocate["rss_before_bytes"] >= 0.9 * size
    assert timer.steps["idle"]["peak_rss_bytes"] < allocate["peak_rss_bytes"]
    assert timer.result()["peak_rss_bytes"] >= allocate["peak_rss_bytes"]
    assert peak_rss_bytes() > 0
