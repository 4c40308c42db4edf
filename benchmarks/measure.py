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
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

GIB = 1024**3
REPO_ROOT = Path(__file__).resolve().parent.parent
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


def _describe(frame: Any) -> str:
    path = Path(frame.f_code.co_filename)
    parts = path.parts
    if "site-packages" in parts:
        where = "/".join(parts[parts.index("site-packages") + 1:])
    elif path.is_relative_to(REPO_ROOT):
        where = str(path.relative_to(REPO_ROOT))
    else:
        where = path.name
    return f"{where}:{frame.f_code.co_name}"


def _is_project(frame: Any) -> bool:
    path = Path(frame.f_code.co_filename)
    return path.is_relative_to(REPO_ROOT) and ".venv" not in path.parts and \
        path.parts[len(REPO_ROOT.parts)] in ("flows", "ml", "api", "benchmarks")


class StackSampler:
    """Samples the main thread's Python stack at a fixed interval, in a background thread.

    Each sample counts the innermost frame and the innermost frame of this repository's code
    (``flows``, ``ml``, ``api``, ``benchmarks``), so counts times the interval estimate where a
    step spends its time.
    The sampler needs the GIL: while the main thread runs C code that holds it, samples wait,
    so shares are estimates. Work in other threads (dbt's node threads) shows as the main
    thread's wait.
    """

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.step: str | None = None
        self.innermost: dict[str, Counter] = {}
        self.project: dict[str, Counter] = {}
        self._main = threading.main_thread().ident
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stack-sampler", daemon=True)

    def start(self) -> StackSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            step = self.step
            frame = sys._current_frames().get(self._main)
            if step is None or frame is None:
                continue
            self.innermost.setdefault(step, Counter())[_describe(frame)] += 1
            while frame is not None and not _is_project(frame):
                frame = frame.f_back
            owner = _describe(frame) if frame is not None else "(outside the project)"
            self.project.setdefault(step, Counter())[owner] += 1

    def profile(self, top: int = 12) -> dict[str, Any]:
        """Return per step the most sampled frames, as estimated seconds."""
        def seconds(counts: Counter) -> list[list[Any]]:
            return [[name, round(count * self.interval, 2)]
                    for name, count in counts.most_common(top)]

        return {step: {"project_frames": seconds(self.project.get(step, Counter())),
                       "innermost_frames": seconds(counts)}
                for step, counts in self.innermost.items()}


class StepTimer:
    """Records the wall-clock seconds and the peak RSS of named steps run one after another.

    With a ``sampler``, the result also gives each step's most sampled frames.
    """

    def __init__(self, sampler: StackSampler | None = None) -> None:
        self.steps: dict[str, dict[str, Any]] = {}
        self.peak_resets = True
        self.sampler = sampler
        # Peak before the first step (imports, settings), lost at the first reset.
        self.max_peak = peak_rss_bytes()

    @contextmanager
    def step(self, name: str) -> Iterator[dict[str, Any]]:
        """Time the block as step ``name``; the yielded dict takes extra facts about the step."""
        self.peak_resets = reset_peak_rss() and self.peak_resets
        record: dict[str, Any] = {"rss_before_bytes": current_rss_bytes()}
        if self.sampler is not None:
            self.sampler.step = name
        started = time.perf_counter()
        try:
            yield record
        finally:
            record["seconds"] = time.perf_counter() - started
            if self.sampler is not None:
                self.sampler.step = None
            record["peak_rss_bytes"] = peak_rss_bytes()
            self.steps[name] = record
            self.max_peak = max(self.max_peak, record["peak_rss_bytes"])
            logger.info("%s: %.2f s, peak RSS %.2f GiB", name, record["seconds"],
                        record["peak_rss_bytes"] / GIB)

    def result(self) -> dict[str, Any]:
        """Return the steps and the process's peak RSS over all of them."""
        result = {"steps": self.steps, "per_step_peak": self.peak_resets,
                  "peak_rss_bytes": self.max_peak}
        if self.sampler is not None:
            result["profile"] = self.sampler.profile()
        return result


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
