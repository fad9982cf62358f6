"""{{ cookiecutter.project_name }}

A Kedro project that can run its pipelines on Dask.
"""

__version__ = "0.1"
