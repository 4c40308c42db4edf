"""Findings of the ingestion gate in one file, the report that collects them, and its text form."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

MAX_SAMPLES = 5


@dataclass
class Finding:
    """One failed or warned check: what, where, how many rows, and sample values."""

    check: str
    column: str | None
    count: int
    message: str
    hint: str
    samples: list[dict[str, Any]] = field(default_factory=list)
    severity: str = "critical"


@dataclass
class GateReport:
    """Result of gating one file, written as the JSON report beside the kept file."""

    file: str
    file_format: str
    rows: int | None = None
    columns: list[str] = field(default_factory=list)
    failures: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    # One entry per evaluated expectation, in suite order (type, column, success, counts).
    results: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"passed": self.passed}


def format_findings(findings: list[Finding], title: str) -> list[str]:
    """Return the readable lines of a list of findings for the CLI."""
    if not findings:
        return []
    lines = [f"{title} ({len(findings)}):"]
    for number, finding in enumerate(findings, start=1):
        lines.append(f"  {number}. [{finding.check}] {finding.message}")
        lines.append(f"     what to do: {finding.hint}")
    return lines


def display_value(value: Any) -> str:
    """Return a value as it reads in the file: ``2`` rather than ``2.0`` for whole numbers.

    A missing value (None, an empty field) is shown as ``(empty)``.
    """
    if value is None:
        return "(empty)"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return repr(value)
    return str(value)


def list_samples(rows: list[tuple[int, Any]], total: int, location: str) -> str:
    """Return ``line 12: 'abc', line 40: 'x' and 3 more`` for (line, value) rows."""
    shown = ", ".join(f"{location} {line}: {display_value(value)}" for line, value in rows)
    if total > len(rows):
        shown += f" and {total - len(rows)} more"
    return shown
