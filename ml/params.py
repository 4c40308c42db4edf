"""Model parameters from ``ml/params.yml``: seed, validation, tuning, selection, decisions, names.

The parsed values are checked here, so a typo in the file fails with the key and the value
before any training starts.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from flows.config import ML_PARAMS_FILE
from flows.errors import CreditflowError
from ml.policy import DECISIONS

SELECTION_METHODS = ("off", "top_k", "gain_share")
# LightGBM's monotone_constraints values: -1 decreasing, 0 free, +1 increasing.
MONOTONE_DIRECTIONS = (-1, 0, 1)


@dataclass(frozen=True)
class ModelParams:
    """Parsed contents of the parameters file; ``raw`` is the mapping it was read from."""

    raw: dict[str, Any]
    source_text: str = field(default="", repr=False)

    @property
    def seed(self) -> int:
        return int(self.raw["seed"])

    @property
    def validation(self) -> dict[str, Any]:
        return self.raw["validation"]

    @property
    def tuning(self) -> dict[str, Any]:
        return self.raw["tuning"]

    @property
    def lightgbm(self) -> dict[str, Any]:
        return self.raw["lightgbm"]

    @property
    def monotone_constraints(self) -> dict[str, int]:
        """Feature name -> direction of the default probability as the feature grows."""
        return dict(self.raw["lightgbm"].get("monotone_constraints") or {})

    @property
    def feature_selection(self) -> dict[str, Any]:
        return self.raw["feature_selection"]

    @property
    def decision(self) -> dict[str, float]:
        return self.raw["decision"]

    @property
    def auc_tolerance(self) -> float:
        return float(self.raw["promotion"]["auc_tolerance"])

    @property
    def compare(self) -> dict[str, Any]:
        return self.raw["compare"]

    @property
    def reason_names(self) -> dict[str, str]:
        return dict(self.raw["reason_codes"].get("names") or {})

    @property
    def reason_top_n(self) -> int:
        return int(self.raw["reason_codes"]["top_n"])

    @property
    def reason_decisions(self) -> list[str]:
        """Decisions whose applications get reason codes; the others get none (NULL)."""
        return list(self.raw["reason_codes"]["decisions"])

    def with_overrides(self, **sections: dict[str, Any]) -> ModelParams:
        """Return a copy with the given sections updated key by key (``tuning={"trials": 5}``)."""
        raw = copy.deepcopy(self.raw)
        for section, values in sections.items():
            if isinstance(raw.get(section), dict):
                raw[section].update(values)
            else:
                raw[section] = values
        _check(raw, "overrides")
        return ModelParams(raw=raw, source_text=self.source_text)


def load_params(path: str | Path | None = None) -> ModelParams:
    """Read and check the parameters file (default ``ml/params.yml``)."""
    path = Path(path or ML_PARAMS_FILE)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise CreditflowError(
            f"model parameters file {path} not found: restore ml/params.yml from the repository"
        ) from error
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise CreditflowError(f"model parameters file {path} is not valid YAML: {error}") from error
    if not isinstance(raw, dict):
        raise CreditflowError(f"model parameters file {path} must contain a mapping of sections")
    _check(raw, str(path))
    return ModelParams(raw=raw, source_text=text)


def _fail(where: str, key: str, value: Any, expected: str) -> CreditflowError:
    return CreditflowError(f"invalid {key} = {value!r} in {where}: expected {expected}")


# The keys each section may contain. Any other key is a typo that would be silently ignored.
# The names under tuning.search_space and reason_codes.names are free.
KNOWN_KEYS = {
    "validation": {"offset", "months", "history_holdout_fraction"},
    "tuning": {"trials", "timeout_seconds", "early_stopping_rounds", "max_boost_rounds",
               "pruner_startup_trials", "pruner_warmup_rounds", "search_space"},
    "lightgbm": {"num_threads", "max_cat_to_onehot", "max_bin", "monotone_constraints"},
    "feature_selection": {"method", "top_k", "gain_share", "excluded"},
    "decision": {"approve_below", "decline_from"},
    "promotion": {"auc_tolerance"},
    "compare": {"lightgbm_rounds", "lightgbm_learning_rate", "lightgbm_num_leaves"},
    "reason_codes": {"top_n", "decisions", "names"},
}


def _check_known_keys(raw: dict[str, Any], where: str) -> None:
    for key in raw:
        if key != "seed" and key not in KNOWN_KEYS:
            raise CreditflowError(
                f"unknown section {key!r} in {where}: expected seed, "
                f"{', '.join(KNOWN_KEYS)}. Correct its name or remove it")
    for section, known in KNOWN_KEYS.items():
        if not isinstance(raw[section], dict):
            raise _fail(where, section, raw[section], "a mapping of keys to values")
        unknown = sorted(set(raw[section]) - known)
        if unknown:
            raise CreditflowError(
                f"unknown key {section}.{unknown[0]} in {where}: expected one of "
                f"{', '.join(sorted(known))}. Correct its name or remove it")


def _check(raw: dict[str, Any], where: str) -> None:
    required = ("seed", "validation", "tuning", "lightgbm", "feature_selection", "decision",
                "promotion", "compare", "reason_codes")
    for section in required:
        if section not in raw:
            raise CreditflowError(f"section {section!r} is missing in {where}: add it "
                                  "(see ml/params.yml in the repository)")
    _check_known_keys(raw, where)

    if not isinstance(raw["seed"], int):
        raise _fail(where, "seed", raw["seed"], "an integer")

    validation = raw["validation"]
    if not isinstance(validation.get("offset"), int) or validation["offset"] < 1:
        raise _fail(where, "validation.offset", validation.get("offset"), "an integer >= 1")
    pooled = validation.setdefault("months", 1)
    if not isinstance(pooled, int) or pooled < 1:
        raise _fail(where, "validation.months", pooled, "an integer >= 1")
    fraction = validation.get("history_holdout_fraction")
    if not isinstance(fraction, int | float) or not 0 < fraction < 1:
        raise _fail(where, "validation.history_holdout_fraction", fraction,
                    "a number between 0 and 1")

    tuning = raw["tuning"]
    for key in ("trials", "early_stopping_rounds", "max_boost_rounds"):
        if not isinstance(tuning.get(key), int) or tuning[key] < 1:
            raise _fail(where, f"tuning.{key}", tuning.get(key), "an integer >= 1")
    timeout = tuning.get("timeout_seconds")
    if timeout is not None and (not isinstance(timeout, int | float) or timeout <= 0):
        raise _fail(where, "tuning.timeout_seconds", timeout, "a positive number or null")
    for name, bounds in (tuning.get("search_space") or {}).items():
        if (not isinstance(bounds, list) or len(bounds) != 2
                or not all(isinstance(b, int | float) for b in bounds) or bounds[0] > bounds[1]):
            raise _fail(where, f"tuning.search_space.{name}", bounds,
                        "[low, high] with low <= high")
    depth = (tuning.get("search_space") or {}).get("max_depth")
    # LightGBM reads max_depth <= 0 as no limit, which a sampled range cannot mean.
    if depth is not None and not all(type(b) is int and b >= 1 for b in depth):
        raise _fail(where, "tuning.search_space.max_depth", depth,
                    "[low, high] of integers >= 1 (leave max_depth out for no depth limit)")

    _check_monotone(raw["lightgbm"], where)

    selection = raw["feature_selection"]
    method = selection.get("method")
    # YAML reads a bare `off` as the boolean false.
    if method is False:
        selection["method"] = method = "off"
    if method not in SELECTION_METHODS:
        raise _fail(where, "feature_selection.method", method, " | ".join(SELECTION_METHODS))
    if not isinstance(selection.get("top_k"), int) or selection["top_k"] < 1:
        raise _fail(where, "feature_selection.top_k", selection.get("top_k"), "an integer >= 1")
    excluded = selection.setdefault("excluded", [])
    if not isinstance(excluded, list) or not all(isinstance(name, str) for name in excluded):
        raise _fail(where, "feature_selection.excluded", excluded, "a list of column names")
    share = selection.get("gain_share")
    if not isinstance(share, int | float) or not 0 < share <= 1:
        raise _fail(where, "feature_selection.gain_share", share, "a number in (0, 1]")

    decision = raw["decision"]
    approve, decline = decision.get("approve_below"), decision.get("decline_from")
    if (not isinstance(approve, int | float) or not isinstance(decline, int | float)
            or not 0 <= approve <= decline <= 1):
        raise _fail(where, "decision", decision,
                    "0 <= approve_below <= decline_from <= 1 (default probabilities)")

    tolerance = raw["promotion"].get("auc_tolerance")
    if not isinstance(tolerance, int | float) or tolerance < 0:
        raise _fail(where, "promotion.auc_tolerance", tolerance, "a number >= 0")

    top_n = raw["reason_codes"].get("top_n")
    if not isinstance(top_n, int) or top_n < 0:
        raise _fail(where, "reason_codes.top_n", top_n, "an integer >= 0")
    explained = raw["reason_codes"].setdefault("decisions", list(DECISIONS))
    if not isinstance(explained, list) or not all(name in DECISIONS for name in explained):
        raise _fail(where, "reason_codes.decisions", explained,
                    f"a list of decisions among {', '.join(DECISIONS)}")


def _check_monotone(lightgbm: dict[str, Any], where: str) -> None:
    constraints = lightgbm.setdefault("monotone_constraints", {})
    # YAML reads an empty value (`monotone_constraints:`) as null.
    if constraints is None:
        lightgbm["monotone_constraints"] = constraints = {}
    if not isinstance(constraints, dict):
        raise _fail(where, "lightgbm.monotone_constraints", constraints,
                    "a mapping of feature name to -1, 0 or 1")
    for name, direction in constraints.items():
        # type() and not isinstance(), because YAML's true and false load as Python bools,
        # and bool is a subclass of int.
        valid = type(direction) is int and direction in MONOTONE_DIRECTIONS
        if not isinstance(name, str) or not valid:
            raise _fail(where, f"lightgbm.monotone_constraints.{name}", direction,
                        "-1 (default probability falls as the feature grows), 0 (no "
                        "constraint) or 1 (rises)")
