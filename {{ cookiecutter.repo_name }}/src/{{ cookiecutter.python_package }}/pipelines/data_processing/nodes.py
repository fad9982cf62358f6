"""Nodes of the ``data_processing`` pipeline.

The example works on synthetic daily unit sales for a chain of retail stores. The
data is generated from a fixed seed so that every run, with any runner, writes the
same bytes to disk.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

_REGIONS = ("north", "south", "coastal")
_REGION_DEMAND = {"north": 0.9, "south": 1.0, "coastal": 1.2}
_REGION_WARMTH = {"north": -4.0, "south": 3.0, "coastal": 1.0}
_DAYS_PER_YEAR = 365.25


def generate_raw_sales(parameters: dict[str, Any]) -> pd.DataFrame:
    """Simulate the daily sales extract of a retail chain.

    Demand per store and day depends on store size and region, the day of the week,
    the season, promotions, public holidays and, non-linearly, on the temperature
    (people shop most on mild days). A persistent store-level shock makes recent
    sales informative about today's. The extract also contains the defects a real
    one would: missing temperatures, negative unit counts and duplicated rows.

    Args:
        parameters: ``raw_data`` parameters: ``n_stores``, ``n_days``,
            ``start_date``, ``seed`` and the ``*_rate`` defect frequencies.

    Returns:
        One row per store and day (plus duplicates), with the date as an ISO string.
    """
    rng = np.random.default_rng(parameters["seed"])
    n_stores = int(parameters["n_stores"])
    n_days = int(parameters["n_days"])

    dates = pd.date_range(parameters["start_date"], periods=n_days, freq="D")
    store_ids = np.array([f"S{i + 1:03d}" for i in range(n_stores)])
    regions = np.array([_REGIONS[i % len(_REGIONS)] for i in range(n_stores)])
    store_size = np.round(rng.uniform(400, 2400, size=n_stores), -1)
    store_size = store_size.astype(np.int64)

    day_of_year = dates.day_of_year.to_numpy()
    season = np.sin(2 * np.pi * (day_of_year - 100) / _DAYS_PER_YEAR)
    warmth = np.array([_REGION_WARMTH[r] for r in regions])
    temperature = (
        13.0
        + 11.0 * season[:, None]
        + warmth[None, :]
        + rng.normal(0.0, 3.0, size=(n_days, n_stores))
    )

    is_weekend = (dates.day_of_week.to_numpy() >= 5).astype(np.int64)
    holiday = (rng.random(n_days) < 0.03).astype(np.int64)
    promo = (rng.random((n_days, n_stores)) < 0.15).astype(np.int64)

    # Persistent store-level demand shock: AR(1) on the log scale.
    shock = np.zeros((n_days, n_stores))
    innovations = rng.normal(0.0, 0.08, size=(n_days, n_stores))
    for day in range(1, n_days):
        shock[day] = 0.7 * shock[day - 1] + innovations[day]

    region_demand = np.array([_REGION_DEMAND[r] for r in regions])
    base = 0.06 * store_size * region_demand
    comfort = np.exp(-(((temperature - 21.0) / 11.0) ** 2))
    promo_lift = 1.0 + promo * (0.15 + 0.25 * store_size / store_size.max())
    expected = (
        base[None, :]
        * (1.0 + 0.25 * is_weekend[:, None] + 0.35 * holiday[:, None])
        * (0.6 + 0.6 * comfort)
        * promo_lift
        * np.exp(shock)
    )
    units = rng.poisson(expected).astype(np.int64)

    frame = pd.DataFrame(
        {
            "date": np.repeat(dates.strftime("%Y-%m-%d").to_numpy(), n_stores),
            "store_id": np.tile(store_ids, n_days),
            "region": np.tile(regions, n_days),
            "store_size_sqm": np.tile(store_size, n_days),
            "promo": promo.ravel(),
            "holiday": np.repeat(holiday, n_stores),
            "temperature_c": np.round(temperature.ravel(), 1),
            "units_sold": units.ravel(),
        }
    )

    n_rows = len(frame)
    missing = rng.random(n_rows) < parameters["missing_temperature_rate"]
    frame.loc[missing, "temperature_c"] = np.nan
    negative = rng.random(n_rows) < parameters["negative_units_rate"]
    frame.loc[negative, "units_sold"] = -frame.loc[negative, "units_sold"] - 1
    duplicated = np.flatnonzero(rng.random(n_rows) < parameters["duplicate_rate"])
    frame = pd.concat([frame, frame.iloc[duplicated]])
    frame = frame.sort_values(["date", "store_id"], kind="stable")
    return frame.reset_index(drop=True)


def _interpolate_within_store(frame: pd.DataFrame, column: str) -> pd.Series:
    """Linearly interpolate ``column`` inside each store's time series."""
    return frame.groupby("store_id", sort=False)[column].transform(
        lambda values: values.interpolate(limit_direction="both")
    )


def preprocess_sales(raw_sales: pd.DataFrame) -> pd.DataFrame:
    """Clean the raw extract.

    Removes duplicated rows, parses dates, treats negative unit counts as missing
    and fills gaps in units and temperature by interpolating within each store.

    Args:
        raw_sales: Output of ``generate_raw_sales`` (as loaded from CSV).

    Returns:
        One row per store and day, sorted by store then date.
    """
    sales = raw_sales.drop_duplicates(subset=["date", "store_id"], keep="first")
    sales = sales.assign(
        date=pd.to_datetime(sales["date"], format="%Y-%m-%d"),
        store_id=sales["store_id"].astype(str),
        region=sales["region"].astype(str),
        units_sold=sales["units_sold"].astype("float64"),
        temperature_c=sales["temperature_c"].astype("float64"),
    )
    sales = sales.sort_values(["store_id", "date"], kind="stable")
    sales = sales.reset_index(drop=True)

    sales.loc[sales["units_sold"] < 0, "units_sold"] = np.nan
    sales["units_sold"] = _interpolate_within_store(sales, "units_sold").round()
    sales["temperature_c"] = _interpolate_within_store(sales, "temperature_c")
    sales["temperature_c"] = sales["temperature_c"].round(1)
    return sales[
        [
            "date",
            "store_id",
            "region",
            "store_size_sqm",
            "promo",
            "holiday",
            "temperature_c",
            "units_sold",
        ]
    ]


def create_model_input_table(
    preprocessed_sales: pd.DataFrame, parameters: dict[str, Any]
) -> pd.DataFrame:
    """Build the modelling table: calendar, weather, promotion and lag features.

    Lags and the rolling mean only look at earlier days of the same store, so no
    information from the day being predicted leaks into its features.

    Args:
        preprocessed_sales: Output of ``preprocess_sales``.
        parameters: ``features`` parameters: ``lags`` (list of day offsets) and
            ``rolling_window`` (days).

    Returns:
        Identifier columns, feature columns and the ``units_sold`` target, without
        the first days of each store for which lags are not yet available.
    """
    table = preprocessed_sales.sort_values(["store_id", "date"], kind="stable")
    table = table.reset_index(drop=True)
    by_store = table.groupby("store_id", sort=False)["units_sold"]

    day_of_year = table["date"].dt.day_of_year.to_numpy()
    features = {
        "is_weekend": (table["date"].dt.day_of_week >= 5).astype("int64"),
        "season_sin": np.sin(2 * np.pi * day_of_year / _DAYS_PER_YEAR),
        "season_cos": np.cos(2 * np.pi * day_of_year / _DAYS_PER_YEAR),
        "store_size_k": table["store_size_sqm"] / 1000.0,
    }
    for lag in parameters["lags"]:
        features[f"units_lag_{lag}"] = by_store.shift(lag)
    window = int(parameters["rolling_window"])
    features[f"units_rolling_mean_{window}"] = by_store.transform(
        lambda values: values.shift(1).rolling(window).mean()
    )
    table = table.assign(**features)
    table = table.dropna().reset_index(drop=True)

    feature_columns = [
        "temperature_c",
        "promo",
        "holiday",
        *features,
    ]
    return table[["date", "store_id", *feature_columns, "units_sold"]]


def split_data(
    model_input_table: pd.DataFrame, parameters: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    """Split the table in time: the last ``test_days`` days are held out.

    Args:
        model_input_table: Output of ``create_model_input_table``.
        parameters: ``split`` parameters: ``test_days``, ``target`` and
            ``features`` (the feature columns to use, in order).

    Returns:
        ``X_train``, ``X_test``, ``y_train`` and ``y_test``.
    """
    cutoff = model_input_table["date"].max() - pd.Timedelta(
        days=int(parameters["test_days"])
    )
    is_train = (model_input_table["date"] <= cutoff).to_numpy()
    features = list(parameters["features"])
    target = parameters["target"]

    train = model_input_table.loc[is_train].reset_index(drop=True)
    test = model_input_table.loc[~is_train].reset_index(drop=True)
    return train[features], test[features], train[target], test[target]
