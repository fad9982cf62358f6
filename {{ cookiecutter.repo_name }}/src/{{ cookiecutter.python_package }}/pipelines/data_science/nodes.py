"""Nodes of the ``data_science`` pipeline.

The models are (regularised) least-squares regressions solved in closed form with
numpy, optionally on a degree-2 polynomial expansion of the features. Each fit is
followed by a bootstrap that refits the model on resampled training rows to give
confidence intervals for the coefficients: real, independent CPU work per model,
which is what lets the branches benefit from running in parallel on Dask. The
arithmetic avoids multi-threaded BLAS so that results do not depend on the number
of threads of the process that runs the node (see ``_solve_ridge``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

_DECIMALS = 6


@dataclass(frozen=True)
class LinearRegressor:
    """A fitted linear model on standardised (optionally polynomial) terms.

    Instances are plain data and pickle cleanly, so they can travel between
    processes or Dask workers.
    """

    name: str
    features: tuple[str, ...]
    terms: tuple[tuple[str, ...], ...]
    term_means: np.ndarray
    term_scales: np.ndarray
    intercept: float
    coefficients: np.ndarray
    coefficient_ci_low: np.ndarray
    coefficient_ci_high: np.ndarray

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        """Predict the target for the rows of ``features``."""
        design = _design_matrix(features, self.terms)
        standardised = (design - self.term_means) / self.term_scales
        return np.einsum("ij,j->i", standardised, self.coefficients) + self.intercept


def _polynomial_terms(
    features: pd.DataFrame, degree: int
) -> tuple[tuple[str, ...], ...]:
    """List the model terms: each term is a product of feature columns.

    Degree 2 adds every pairwise interaction and the square of each non-binary
    feature (squaring a 0/1 column would only duplicate it).
    """
    names = tuple(features.columns)
    terms: list[tuple[str, ...]] = [(name,) for name in names]
    if degree >= 2:
        for name in names:
            if not features[name].isin([0, 1]).all():
                terms.append((name, name))
        terms.extend(combinations(names, 2))
    if degree > 2:
        raise ValueError(f"degree must be 1 or 2, got {degree}")
    return tuple(terms)


def _design_matrix(
    features: pd.DataFrame, terms: tuple[tuple[str, ...], ...]
) -> np.ndarray:
    """Evaluate ``terms`` on ``features`` into a float matrix (rows x terms)."""
    columns = {name: features[name].to_numpy(dtype="float64") for name in features}
    design = np.empty((len(features), len(terms)))
    for index, term in enumerate(terms):
        values = columns[term[0]].copy()
        for name in term[1:]:
            values *= columns[name]
        design[:, index] = values
    return design


def _solve_ridge(design: np.ndarray, target: np.ndarray, alpha: float) -> np.ndarray:
    """Closed-form ridge solution on centred data (``alpha=0`` is least squares).

    The sums over rows use ``np.einsum`` rather than ``@``: a multi-threaded BLAS
    may split those sums differently depending on how many threads it has, which
    changes the last bits of the result. ``einsum`` always adds in the same order,
    so the outputs are identical in every process (for example on Dask workers,
    which run with one BLAS thread).
    """
    centred = design - design.mean(axis=0)
    gram = np.einsum("ij,ik->jk", centred, centred)
    gram[np.diag_indices_from(gram)] += alpha
    rhs = np.einsum("ij,i->j", centred, target - target.mean())
    return np.linalg.solve(gram, rhs)


def _term_name(term: tuple[str, ...]) -> str:
    if len(term) == 2 and term[0] == term[1]:
        return f"{term[0]}^2"
    return " * ".join(term)


def train_model(
    X_train: pd.DataFrame, y_train: pd.Series, model_options: dict[str, Any]
) -> LinearRegressor:
    """Fit a (ridge) regression and bootstrap confidence intervals of its weights.

    Args:
        X_train: Training features.
        y_train: Training target.
        model_options: ``name``, ``degree`` (1 or 2), ``alpha`` (ridge penalty on
            standardised terms, 0 for ordinary least squares), ``n_bootstrap``
            (number of refits on resampled rows), ``confidence`` (for example
            0.95) and ``seed``.

    Returns:
        The fitted model.
    """
    terms = _polynomial_terms(X_train, int(model_options["degree"]))
    design = _design_matrix(X_train, terms)
    means = design.mean(axis=0)
    scales = design.std(axis=0)
    scales[scales == 0] = 1.0
    standardised = (design - means) / scales
    target = y_train.to_numpy(dtype="float64")
    alpha = float(model_options["alpha"])

    coefficients = _solve_ridge(standardised, target, alpha)
    intercept = float(target.mean())

    rng = np.random.default_rng(model_options["seed"])
    n_rows = len(target)
    n_bootstrap = int(model_options["n_bootstrap"])
    draws = np.empty((n_bootstrap, len(terms)))
    for draw in range(n_bootstrap):
        rows = rng.integers(0, n_rows, size=n_rows)
        draws[draw] = _solve_ridge(standardised[rows], target[rows], alpha)
    tail = (1.0 - float(model_options["confidence"])) / 2.0
    low, high = np.quantile(draws, [tail, 1.0 - tail], axis=0)

    return LinearRegressor(
        name=str(model_options["name"]),
        features=tuple(X_train.columns),
        terms=terms,
        term_means=means,
        term_scales=scales,
        intercept=intercept,
        coefficients=coefficients,
        coefficient_ci_low=low,
        coefficient_ci_high=high,
    )


def tabulate_coefficients(regressor: LinearRegressor) -> pd.DataFrame:
    """Report the model weights, on the standardised scale, with their intervals.

    Args:
        regressor: Output of ``train_model``.

    Returns:
        One row per term plus the intercept, sorted by absolute weight.
    """
    table = pd.DataFrame(
        {
            "term": [_term_name(term) for term in regressor.terms],
            "coefficient": regressor.coefficients,
            "ci_low": regressor.coefficient_ci_low,
            "ci_high": regressor.coefficient_ci_high,
        }
    )
    table["abs_coefficient"] = table["coefficient"].abs()
    table = table.sort_values(
        ["abs_coefficient", "term"], ascending=[False, True], kind="stable"
    ).drop(columns="abs_coefficient")
    intercept = pd.DataFrame(
        {
            "term": ["(intercept)"],
            "coefficient": [regressor.intercept],
            "ci_low": [np.nan],
            "ci_high": [np.nan],
        }
    )
    table = pd.concat([intercept, table], ignore_index=True)
    table.insert(0, "model", regressor.name)
    return table.round(_DECIMALS)


def evaluate_model(
    regressor: LinearRegressor,
    X_test: pd.DataFrame,
    y_test: pd.Series,
    model_options: dict[str, Any],
) -> dict[str, Any]:
    """Score the model on the held-out days, with a bootstrap interval for RMSE.

    Args:
        regressor: Output of ``train_model``.
        X_test: Held-out features.
        y_test: Held-out target.
        model_options: Uses ``n_bootstrap``, ``confidence`` and ``seed``.

    Returns:
        A JSON-friendly dictionary of metrics, rounded to 6 decimals.
    """
    actual = y_test.to_numpy(dtype="float64")
    errors = regressor.predict(X_test) - actual

    rng = np.random.default_rng(model_options["seed"])
    n_rows = len(errors)
    resamples = rng.integers(
        0, n_rows, size=(int(model_options["n_bootstrap"]), n_rows)
    )
    rmse_draws = np.sqrt(np.mean(errors[resamples] ** 2, axis=1))
    tail = (1.0 - float(model_options["confidence"])) / 2.0
    rmse_low, rmse_high = np.quantile(rmse_draws, [tail, 1.0 - tail])

    residual = float(np.sum(errors**2))
    total = float(np.sum((actual - actual.mean()) ** 2))
    metrics = {
        "rmse": float(np.sqrt(np.mean(errors**2))),
        "rmse_ci_low": float(rmse_low),
        "rmse_ci_high": float(rmse_high),
        "mae": float(np.mean(np.abs(errors))),
        "r2": 1.0 - residual / total,
    }
    logger.info(
        "Model '%s' scores RMSE %.3f on %d held-out rows",
        regressor.name,
        metrics["rmse"],
        n_rows,
    )
    return {
        "model": regressor.name,
        "n_terms": len(regressor.terms),
        "n_test_rows": n_rows,
        **{key: round(value, _DECIMALS) for key, value in metrics.items()},
    }
