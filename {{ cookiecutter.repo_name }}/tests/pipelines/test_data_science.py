"""Tests of the data_science nodes and of the namespaced pipeline."""

import numpy as np
import pandas as pd
import pytest

from {{ cookiecutter.python_package }}.pipelines.data_science import (
    MODEL_VARIANTS,
    create_pipeline,
)
from {{ cookiecutter.python_package }}.pipelines.data_science.nodes import (
    evaluate_model,
    tabulate_coefficients,
    train_model,
)


def _make_data(n_rows, seed):
    rng = np.random.default_rng(seed)
    features = pd.DataFrame(
        {
            "x": rng.uniform(-2.0, 2.0, n_rows),
            "z": rng.normal(0.0, 1.0, n_rows),
            "flag": rng.integers(0, 2, n_rows),
        }
    )
    target = (
        3.0
        + 2.0 * features["x"]
        - 1.5 * features["x"] ** 2
        + 0.5 * features["z"]
        + features["flag"]
        + rng.normal(0.0, 0.1, n_rows)
    )
    return features, target.rename("y")


def _options(name, degree, alpha=0.0, n_bootstrap=50):
    return {
        "name": name,
        "degree": degree,
        "alpha": alpha,
        "n_bootstrap": n_bootstrap,
        "confidence": 0.9,
        "seed": 3,
    }


@pytest.fixture
def train_data():
    return _make_data(400, seed=1)


@pytest.fixture
def test_data():
    return _make_data(200, seed=2)


def test_polynomial_model_recovers_a_quadratic(train_data, test_data):
    regressor = train_model(*train_data, _options("polynomial", degree=2))
    # x, z, flag, x^2, z^2 (no flag^2: it is binary) and 3 interactions.
    assert len(regressor.terms) == 8
    metrics = evaluate_model(regressor, *test_data, _options("polynomial", 2))
    assert metrics["rmse"] < 0.15
    assert metrics["r2"] > 0.99
    assert metrics["rmse_ci_low"] <= metrics["rmse"] <= metrics["rmse_ci_high"]


def test_polynomial_beats_linear_on_non_linear_data(train_data, test_data):
    linear = train_model(*train_data, _options("linear", degree=1))
    polynomial = train_model(*train_data, _options("polynomial", degree=2))
    linear_metrics = evaluate_model(linear, *test_data, _options("linear", 1))
    poly_metrics = evaluate_model(polynomial, *test_data, _options("polynomial", 2))
    assert poly_metrics["rmse"] < linear_metrics["rmse"] / 3


def test_ridge_shrinks_the_coefficients(train_data):
    plain = train_model(*train_data, _options("linear", degree=1))
    ridge = train_model(*train_data, _options("ridge", degree=1, alpha=500.0))
    assert np.linalg.norm(ridge.coefficients) < np.linalg.norm(plain.coefficients)


def test_training_and_evaluation_are_deterministic(train_data, test_data):
    options = _options("polynomial", degree=2)
    first = train_model(*train_data, options)
    second = train_model(*train_data, options)
    pd.testing.assert_frame_equal(
        tabulate_coefficients(first), tabulate_coefficients(second)
    )
    assert evaluate_model(first, *test_data, options) == evaluate_model(
        second, *test_data, options
    )


def test_tabulate_coefficients_layout(train_data):
    regressor = train_model(*train_data, _options("linear", degree=1))
    table = tabulate_coefficients(regressor)
    assert list(table.columns) == ["model", "term", "coefficient", "ci_low", "ci_high"]
    assert table["term"].iloc[0] == "(intercept)"
    assert set(table["term"]) == {"(intercept)", "x", "z", "flag"}
    weights = table.iloc[1:]
    assert (weights["ci_low"] <= weights["coefficient"]).all()
    assert (weights["coefficient"] <= weights["ci_high"]).all()
    assert weights["coefficient"].abs().is_monotonic_decreasing


def test_pipeline_has_one_independent_branch_per_variant():
    pipeline = create_pipeline()
    assert len(pipeline.nodes) == 3 * len(MODEL_VARIANTS)
    assert pipeline.inputs() == {
        "X_train",
        "X_test",
        "y_train",
        "y_test",
        *(f"params:{name}.model_options" for name in MODEL_VARIANTS),
    }
    assert pipeline.outputs() == {
        f"{name}.{output}"
        for name in MODEL_VARIANTS
        for output in ("coefficients", "metrics")
    }
    assert "polynomial.train_model_node" in {node.name for node in pipeline.nodes}
