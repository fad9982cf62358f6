"""Tests of the data_processing nodes, on a small generated data set."""

import pandas as pd
import pytest

from {{ cookiecutter.python_package }}.pipelines.data_processing.nodes import (
    create_model_input_table,
    generate_raw_sales,
    preprocess_sales,
    split_data,
)

FEATURES = [
    "temperature_c",
    "promo",
    "holiday",
    "is_weekend",
    "season_sin",
    "season_cos",
    "store_size_k",
    "units_lag_1",
    "units_lag_7",
    "units_rolling_mean_7",
]


@pytest.fixture
def raw_params():
    return {
        "n_stores": 3,
        "n_days": 60,
        "start_date": "2024-01-01",
        "seed": 7,
        "missing_temperature_rate": 0.05,
        "negative_units_rate": 0.05,
        "duplicate_rate": 0.05,
    }


@pytest.fixture
def raw_sales(raw_params):
    return generate_raw_sales(raw_params)


@pytest.fixture
def preprocessed(raw_sales):
    return preprocess_sales(raw_sales)


@pytest.fixture
def model_input(preprocessed):
    return create_model_input_table(preprocessed, {"lags": [1, 7], "rolling_window": 7})


def test_generate_raw_sales_is_deterministic(raw_params, raw_sales):
    again = generate_raw_sales(raw_params)
    pd.testing.assert_frame_equal(raw_sales, again)
    other_seed = generate_raw_sales({**raw_params, "seed": 8})
    assert not raw_sales["units_sold"].equals(other_seed["units_sold"])


def test_generate_raw_sales_contains_the_expected_defects(raw_sales):
    assert len(raw_sales) > 3 * 60  # duplicated rows were appended
    assert raw_sales.duplicated(subset=["date", "store_id"]).any()
    assert raw_sales["temperature_c"].isna().any()
    assert (raw_sales["units_sold"] < 0).any()
    assert list(raw_sales.columns) == [
        "date",
        "store_id",
        "region",
        "store_size_sqm",
        "promo",
        "holiday",
        "temperature_c",
        "units_sold",
    ]


def test_preprocess_sales_removes_the_defects(preprocessed):
    assert len(preprocessed) == 3 * 60
    assert not preprocessed.duplicated(subset=["date", "store_id"]).any()
    assert preprocessed[["temperature_c", "units_sold"]].notna().all().all()
    assert (preprocessed["units_sold"] >= 0).all()
    assert pd.api.types.is_datetime64_any_dtype(preprocessed["date"])
    assert preprocessed["store_id"].is_monotonic_increasing


def test_model_input_table_lags_look_only_at_the_past(preprocessed, model_input):
    # 7 days per store are lost to the 7-day lag and rolling window.
    assert len(model_input) == 3 * (60 - 7)
    assert model_input[FEATURES].notna().all().all()

    store = preprocessed[preprocessed["store_id"] == "S001"].set_index("date")
    row = model_input[model_input["store_id"] == "S001"].iloc[0]
    day = row["date"]
    units = store["units_sold"]
    assert row["units_lag_1"] == units[day - pd.Timedelta(days=1)]
    assert row["units_lag_7"] == units[day - pd.Timedelta(days=7)]
    window = units[day - pd.Timedelta(days=7) : day - pd.Timedelta(days=1)]
    assert row["units_rolling_mean_7"] == pytest.approx(window.mean())


def test_split_data_holds_out_the_last_days(model_input):
    params = {"test_days": 14, "target": "units_sold", "features": FEATURES}
    X_train, X_test, y_train, y_test = split_data(model_input, params)
    assert list(X_train.columns) == FEATURES
    assert len(X_test) == 3 * 14
    assert len(X_train) + len(X_test) == len(model_input)
    assert len(y_train) == len(X_train)
    assert y_test.name == "units_sold"
