"""The ``creditflow run`` and ``creditflow backfill`` commands, and the step names they accept.

This module imports neither Prefect nor :mod:`flows.monthly` at load time. Importing Prefect and
starting a temporary API server (:mod:`flows.prefect_api`) take many seconds, so the commands
reject a mistyped month or step before that.
"""

from __future__ import annotations

import logging
from typing import Any

from flows.config import Settings
from flows.errors import CreditflowError
from flows.months import HISTORY, month_range, parse_month

STEPS = ("land", "gate", "build", "train", "score", "monitor", "export", "report", "notify")


def select_steps(from_step: str | None = None, only_step: str | None = None) -> list[str]:
    """Return the steps a run executes: all, those from ``from_step`` on, or ``only_step``."""
    if from_step and only_step:
        raise CreditflowError("give either a step to start from or a single step, not both")
    for name in (from_step, only_step):
        if name and name not in STEPS:
            raise CreditflowError(f"unknown step {name!r}: choose one of {', '.join(STEPS)}")
    if only_step:
        return [only_step]
    if from_step:
        return list(STEPS[STEPS.index(from_step):])
    return list(STEPS)


def validate_month(month: str) -> str:
    """Return ``month`` as ``YYYY-MM``.

    Raises CreditflowError for an invalid month and for ``history``, which has no run of its own.
    """
    try:
        value = parse_month(month)
    except ValueError as error:
        raise CreditflowError(str(error)) from error
    if value == HISTORY:
        raise CreditflowError(
            "the history file is loaded by the run of the first calendar month: put initial.csv "
            "in the inbox and run that month (e.g. creditflow run --month 2020-10)"
        )
    return value


class _ExpectedErrorFormatter(logging.Formatter):
    """Console formatter that leaves out the traceback of a CreditflowError.

    The error's message names the cause and the fix, and the CLI prints it at the end.
    Other exceptions keep their traceback.
    """

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self._inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info and isinstance(record.exc_info[1], CreditflowError):
            # A copy, so that other handlers of the same record keep the traceback.
            record = logging.makeLogRecord(record.__dict__)
            record.exc_info = None
            record.exc_text = None
        return self._inner.format(record)


def hide_expected_tracebacks() -> None:
    """Keep tracebacks of CreditflowError off the terminal.

    Prefect's flow and task engines log a failed run's exception with its traceback. Those
    records reach the console through the handlers of the root logger. Prefect's API log
    handler sits on ``prefect.flow_runs`` and ``prefect.task_runs`` (Prefect 3's
    ``logging.yml``), so the run logs that Prefect stores keep the traceback.
    """
    for handler in logging.getLogger().handlers:
        if not isinstance(handler.formatter, _ExpectedErrorFormatter):
            handler.setFormatter(_ExpectedErrorFormatter(handler.formatter))


def command_run(args: Any, settings: Settings) -> int:
    month = validate_month(args.month)
    select_steps(args.from_step, args.only_step)

    from flows.monthly import format_summary, run_month
    from flows.prefect_api import api_server_for_flows

    hide_expected_tracebacks()
    with api_server_for_flows():
        summary = run_month(settings, month, from_step=args.from_step,
                            only_step=args.only_step, reuse_model=args.reuse_model)
    print(format_summary(summary))
    return 0


def command_backfill(args: Any, settings: Settings) -> int:
    try:
        month_range(args.first, args.last)
    except ValueError as error:
        raise CreditflowError(str(error)) from error

    from flows.monthly import backfill, format_summary
    from flows.prefect_api import api_server_for_flows

    hide_expected_tracebacks()
    with api_server_for_flows():
        summaries = backfill(settings, args.first, args.last, reuse_model=args.reuse_model)
    for summary in summaries:
        print(format_summary(summary))
    return 0
