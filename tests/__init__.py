"""End-to-end tests of the Kedro Dask starter."""
