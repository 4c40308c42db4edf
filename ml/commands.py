"""The model's CLI subcommands: train, score, models, compare, export."""

from __future__ import annotations

import argparse

from flows.config import Settings
from ml import service


def command_train(args: argparse.Namespace, settings: Settings) -> int:
    settings.ensure_dirs()
    outcome = service.train_month(settings, args.month, trials=args.trials)
    validation = outcome.validation_month + ("" if outcome.out_of_time
                                             else " (holdout, not out of time)")
    print(f"model {outcome.model_id} trained for {args.month} on "
          f"{', '.join(outcome.training_months)}")
    print(f"validation AUC {outcome.validation_auc:.4f} on {validation}")
    print(("champion: " if outcome.promoted else "challenger: ") + outcome.reason)
    return 0


def command_score(args: argparse.Namespace, settings: Settings) -> int:
    outcome = service.score_month(settings, args.month)
    counts = ", ".join(f"{name} {count}" for name, count in outcome.decision_counts.items())
    print(f"scored {outcome.rows} applications of {outcome.month} with model {outcome.model_id}")
    print(f"decisions: {counts}")
    if outcome.auc is not None:
        print(f"realized AUC on the month's labels: {outcome.auc:.4f}")
    for column, count in sorted(outcome.unseen_categories.items()):
        print(f"warning: {count} value(s) of {column} unseen in training, scored as missing")
    return 0


def command_models(args: argparse.Namespace, settings: Settings) -> int:
    models = service.list_models(settings)
    if not models:
        print("no models registered yet: train one with creditflow train --month YYYY-MM")
        return 0
    print(f"  {'model id':<18}{'trained at':<21}{'score month':<13}{'validation':<12}"
          f"{'val. AUC':>9}  status")
    for model in models:
        marker = "*" if model["status"] == "champion" else " "
        value = (model.get("metrics") or {}).get("validation_auc")
        shown = "n/a" if value is None else f"{value:.4f}"
        print(f"{marker} {model['model_id']:<18}{str(model['trained_at'])[:19]:<21}"
              f"{model['score_month'] or '':<13}{model['validation_month'] or '':<12}"
              f"{shown:>9}  {model['status']}")
    print("* champion (scores new months)")
    return 0


def command_compare(args: argparse.Namespace, settings: Settings) -> int:
    from ml.compare import format_table

    outcome = service.compare_month(settings, args.month)
    print(f"trained on {', '.join(outcome.training_months)}; tested on {outcome.test_month}")
    print(format_table(outcome.rows, outcome.cutoff))
    return 0


def command_export(args: argparse.Namespace, settings: Settings) -> int:
    outcome = service.export_predictions(settings, args.month)
    print(f"exported {outcome.rows} predictions of {args.month}:")
    print(f"  {outcome.csv_path}")
    print(f"  {outcome.parquet_path}")
    return 0
