"""The process the API starts for one monthly run: ``python -m api.worker --month M ...``.

It calls :func:`flows.monthly.run_month`, like ``creditflow run``, and adds ``--trials`` so the
API can cap the Optuna search (``CREDITFLOW_TRIALS``). The last line starting with ``error:`` is
what the API shows as the run's message when the process exits with a non-zero code.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from flows.config import load_settings
from flows.errors import CreditflowError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m api.worker",
                                     description="run the monthly flow for one month")
    parser.add_argument("--home", required=True, help="data directory of the deployment")
    parser.add_argument("--month", required=True, help="month to run, YYYY-MM")
    parser.add_argument("--from", dest="from_step", help="start at this step")
    parser.add_argument("--reuse-model", action="store_true",
                        help="score with the current champion instead of retraining")
    parser.add_argument("--trials", type=int, help="Optuna trials (default from ml/params.yml)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

    from flows.monthly import format_summary, run_month

    settings = load_settings(args.home)
    try:
        summary = run_month(settings, args.month, from_step=args.from_step,
                            reuse_model=args.reuse_model, trials=args.trials)
    except CreditflowError as error:
        print(f"error: {str(error).splitlines()[0]}", flush=True)
        return 2
    print(format_summary(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
