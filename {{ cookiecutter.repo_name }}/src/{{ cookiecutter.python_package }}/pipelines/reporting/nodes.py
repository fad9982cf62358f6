"""Nodes of the ``reporting`` pipeline."""

from __future__ import annotations

from typing import Any

import pandas as pd

_COLUMNS = [
    "rank",
    "model",
    "rmse",
    "rmse_ci_low",
    "rmse_ci_high",
    "mae",
    "r2",
    "n_terms",
    "n_test_rows",
]


def compare_models(*metrics: dict[str, Any]) -> tuple[pd.DataFrame, str]:
    """Rank the models by test RMSE (ties broken by name).

    Args:
        *metrics: One metrics dictionary per model, as returned by
            ``evaluate_model``.

    Returns:
        The comparison table (best model first) and the name of the best model.
    """
    if not metrics:
        raise ValueError("compare_models needs the metrics of at least one model")
    table = pd.DataFrame(list(metrics))
    table = table.sort_values(["rmse", "model"], kind="stable").reset_index(drop=True)
    table["rank"] = range(1, len(table) + 1)
    table = table[_COLUMNS]
    return table, str(table.loc[0, "model"])
