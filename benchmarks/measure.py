"""Timing and peak-memory measurement of steps inside one process, and facts about the machine.

Peak memory is the process's peak resident set size (``VmHWM`` in ``/proc/self/status``). Linux
resets that peak to the current RSS when ``5`` is written to ``/proc/self/clear_refs``, so each
step's peak is its own: the largest RSS of the process while the step ran, including what
earlier steps left allocated. Where ``clear_refs`` is not available (not Linux, or not
writable), the peak falls back to ``ru_maxrss``, the peak since the process started.

The reset also lowers what ``getrusage`` reports as ``ru_maxrss`` for the process, so the peak
of a whole run is the largest of its steps' peaks (:meth:`StepTimer.result`), not the parent's
``RUSAGE_CHILDREN`` figure.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

GIB = 1024**3
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
# Packages whose versions decide the numbers; recorded with every result file.
PACKAGES = ("duckdb", "dbt-core", "dbt-duckdb", "lightgbm", "optuna", "pandas", "pyarrow",
            "numpy", "scikit-learn", "prefect", "great-expectations", "matplotlib")


def _status_kib(field: str) -> int | None:
    try:
        text = _STATUS.read_text()
    except OSError:
        return None
    found = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    return int(found.group(1)) if found else None


def reset_peak_rss() -> bool:
    """Reset the process's peak RSS to its current RSS; return False where Linux cannot."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def peak_rss_bytes() -> int:
    """Return the process's peak RSS since the last reset (or since it started), in bytes."""
    peak = _status_kib("VmHWM")
    if peak is not None:
        return peak * 1024
    # ru_maxrss is in KiB on Linux and in bytes on macOS.
    maximum = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maximum if sys.platform == "darwin" else maximum * 1024


def current_rss_bytes() -> int | None:
    value = _status_kib("VmRSS")
    return None if value is None else value * 1024


class StepTimer:
    """Records the wall-clock seconds and the peak RSS of named steps run one after another."""

    def __init__(self) -> None:
        self.steps: dict[str, dict[str, Any]] = {}
        self.peak_resets = True
        # Peak before the first step (imports, settings), lost at the first reset.
        self.max_peak = peak_rss_bytes()

    @contextmanager
    def step(self, name: str) -> Iterator[dict[str, Any]]:
        """Time the block as step ``name``; the yielded dict takes extra facts about the step."""
        self.peak_resets = reset_peak_rss() and self.peak_resets
        record: dict[str, Any] = {"rss_before_bytes": current_rss_bytes()}
        started = time.perf_counter()
        try:
            yield record
        finally:
            record["seconds"] = time.perf_counter() - started
            record["peak_rss_bytes"] = peak_rss_bytes()
            self.steps[name] = record
            self.max_peak = max(self.max_peak, record["peak_rss_bytes"])
            logger.info("%s: %.2f s, peak RSS %.2f GiB", name, record["seconds"],
                        record["peak_rss_bytes"] / GIB)

    def result(self) -> dict[str, Any]:
        """Return the steps and the process's peak RSS over all of them."""
        return {"steps": self.steps, "per_step_peak": self.peak_resets,
                "peak_rss_bytes": self.max_peak}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def total_memory_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit(repo: Path) -> str | None:
    try:
        output = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=True,
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return output.stdout.strip() or None


def machine_facts(repo: Path) -> dict[str, Any]:
    """Return the facts that decide the numbers: CPU, cores, memory, OS, Python, packages."""
    return {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_bytes": total_memory_bytes(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": package_versions(),
        "git_commit": git_commit(repo),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` through a temporary file, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(temporary, path)
