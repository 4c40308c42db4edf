"""Chart of time versus history size for creditflow and the notebook pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

_SIDES = (("creditflow", "creditflow", "tab:blue"), ("notebook", "notebook pipeline", "tab:red"))
_PANELS = (("whole", "Whole monthly run"), ("data_steps", "Data steps (ingest to features)"))


def _series(by_size: dict[str, Any], measure: str
            ) -> tuple[list[int], list[float], list[list[float]]]:
    sizes, medians, errors = [], [], [[], []]
    for key in sorted(by_size, key=int):
        values = by_size[key][measure]
        if values["median"] is None:
            continue
        sizes.append(int(key))
        medians.append(values["median"])
        errors[0].append(values["median"] - values["min"])
        errors[1].append(values["max"] - values["median"])
    return sizes, medians, errors


def draw_chart(results: dict[str, Any], path: Path) -> Path:
    """Draw median seconds (bars: min to max) against months of history; write a PNG."""
    summary = results["summary"]
    config = results["config"]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
    for axis, (measure, title) in zip(axes, _PANELS, strict=True):
        for side, label, color_name in _SIDES:
            sizes, medians, errors = _series(summary[side], measure)
            if sizes:
                axis.errorbar(sizes, medians, yerr=errors, marker="o", capsize=4,
                              color=color_name, label=label)
        axis.set_title(title)
        axis.set_xlabel("months of history before the scored month")
        axis.set_ylabel("seconds (median; bars: min to max)")
        axis.set_xticks(list(config["sizes"]))
        axis.set_ylim(bottom=0)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(f"{config['rows']:,} applications per month, {config['trials']} Optuna "
                    f"trials, {config['mode']} mode")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
