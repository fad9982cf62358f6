"""Tests of the reporting node."""

import pytest

from {{ cookiecutter.python_package }}.pipelines.reporting.nodes import compare_models


def _metrics(model, rmse):
    return {
        "model": model,
        "n_terms": 10,
        "n_test_rows": 100,
        "rmse": rmse,
        "rmse_ci_low": rmse - 1.0,
        "rmse_ci_high": rmse + 1.0,
        "mae": rmse * 0.8,
        "r2": 0.5,
    }


def test_compare_models_ranks_by_rmse():
    table, best = compare_models(
        _metrics("linear", 15.0), _metrics("ridge", 15.5), _metrics("polynomial", 14.0)
    )
    assert best == "polynomial"
    assert list(table["model"]) == ["polynomial", "linear", "ridge"]
    assert list(table["rank"]) == [1, 2, 3]
    assert list(table.columns) == [
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


def test_compare_models_breaks_ties_by_name():
    _, best = compare_models(_metrics("ridge", 1.0), _metrics("linear", 1.0))
    assert best == "linear"


def test_compare_models_needs_metrics():
    with pytest.raises(ValueError, match="at least one model"):
        compare_models()
