"""Modular pipelines of the demand-forecasting example."""
