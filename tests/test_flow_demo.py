"""``creditflow demo``: its refusal of a used data directory and the commands it prints.

The demo's backfill is the flow that ``test_flow_real.py`` runs on the real sample. Here the
summary is read from that backfill, and every command it prints is run.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from types import SimpleNamespace

import pytest

from flows.config import Settings
from flows.demo import DEMO_MONTHS, command_demo, format_summary, read_summary, run_demo
from flows.errors import CreditflowError


def test_demo_rejects_used_home(settings):
    (settings.inbox / "20210101.csv").write_text("SK_ID_CURR\n1\n", encoding="utf-8")
    with pytest.raises(CreditflowError, match="already contains data") as caught:
        run_demo(settings, history_rows=100, rows_per_month=10)
    assert str(settings.inbox) in str(caught.value)
    assert "--home" in str(caught.value)
    # Nothing was generated next to the file that was there.
    assert [p.name for p in settings.inbox.iterdir()] == ["20210101.csv"]


@pytest.fixture
def demo_home(backfilled_home, tmp_path) -> Settings:
    home = tmp_path / "demo home"  # a space, to check the printed commands quote paths
    shutil.copytree(backfilled_home, home)
    return Settings(home=home)


def _command(output: str, starts_with: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip().startswith(starts_with)]
    assert lines, f"no line starting with {starts_with!r} in:\n{output}"
    return lines[0]


@pytest.mark.slow
def test_demo_summary_lists_months(demo_home):
    summary = read_summary(demo_home)
    assert [result.month for result in summary.months] == DEMO_MONTHS
    assert all(result.status == "succeeded" for result in summary.months)
    assert all(result.rows_scored == 1000 for result in summary.months)
    assert all(0.5 < result.auc < 1 for result in summary.months)
    output = format_summary(summary)
    for month in DEMO_MONTHS:
        assert f"{month}   succeeded     1000" in output
    assert str(demo_home.warehouse) in output
    assert "predictions_2021-01.csv" in output


@pytest.mark.slow
def test_demo_printed_query_runs(demo_home):
    output = format_summary(read_summary(demo_home))
    python_line = next(line for line in output.splitlines() if "import duckdb" in line)
    result = subprocess.run(shlex.split(python_line), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "score_month" in result.stdout
    assert "2021-01" in result.stdout
    assert "approve" in result.stdout or "review" in result.stdout


@pytest.mark.slow
def test_demo_printed_docs_generate_runs(demo_home):
    output = format_summary(read_summary(demo_home))
    export = _command(output, "export CREDITFLOW_HOME=")
    serve = _command(output, "cd ")
    # Run the printed generate command; serving would block, so stop before it.
    generate = serve.split(" && ")[:2]
    script = f"{export} && {' && '.join(generate)}"
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Catalog written" in result.stdout


@pytest.mark.slow
def test_demo_again_shows_results(demo_home, capsys):
    args = SimpleNamespace(history_rows=100, rows_per_month=10)
    assert command_demo(args, demo_home) == 0
    output = capsys.readouterr().out
    assert "the demo already ran" in output
    assert "2021-01   succeeded" in output
