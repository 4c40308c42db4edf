"""Entry point of the child processes the harness starts, one per measurement.

``python -m benchmarks.child TASK.json RESULT.json`` runs the task described in ``TASK.json``
and writes its measurements to ``RESULT.json``. A process per measurement gives each one its own
peak memory and starts it with no cache left warm by the previous one.

Task kinds: ``history`` (load the history files), ``month`` (the five steps of a monthly run),
``scoring`` (the parts of scoring), ``notebook`` (the notebook pipeline).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

_IMPORT_STARTED = time.perf_counter()

from benchmarks import notebook, pipeline  # noqa: E402
from benchmarks.measure import peak_rss_bytes, write_json  # noqa: E402

_IMPORT_SECONDS = time.perf_counter() - _IMPORT_STARTED
logger = logging.getLogger(__name__)


def run_task(task: dict[str, Any]) -> dict[str, Any]:
    """Run one task and return its measurements."""
    kind = task["kind"]
    if kind == "history":
        return pipeline.load_history(Path(task["home"]), task["files"])
    params = pipeline.benchmark_params(task["trials"], task["max_rounds"])
    if kind == "month":
        return pipeline.run_month(Path(task["home"]), Path(task["path"]), task["month"], params,
                                  data_only=task.get("data_only", False))
    if kind == "scoring":
        return pipeline.measure_scoring(Path(task["home"]), task["month"], params,
                                        task.get("repetitions", 3))
    if kind == "notebook":
        return notebook.run_notebook([Path(path) for path in task["files"]],
                                     Path(task["out_csv"]), params)
    raise ValueError(f"invalid task kind {kind!r}: use history, month, scoring or notebook")


def volunteer_for_oom_killer() -> None:
    """Make this process the first one Linux kills when memory runs out.

    The notebook pipeline at 10 months of history needs many GiB; if the machine runs short,
    the benchmark should die, not a neighbouring process.
    """
    try:
        Path("/proc/self/oom_score_adj").write_text("1000")
    except OSError as error:
        logger.warning("could not raise the OOM score of the benchmark process: %s", error)


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if len(arguments) != 2:
        sys.stderr.write("usage: python -m benchmarks.child TASK.json RESULT.json\n")
        return 2
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    volunteer_for_oom_killer()
    task = json.loads(Path(arguments[0]).read_text())
    result = run_task(task)
    result["import_seconds"] = _IMPORT_SECONDS
    # Tasks without steps never reset the peak, so the process's own peak covers them.
    result.setdefault("peak_rss_bytes", peak_rss_bytes())
    write_json(Path(arguments[1]), result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
