"""The ``reporting`` pipeline: fan-in of every model branch's metrics."""

import warnings

from kedro.pipeline import Node, Pipeline

from ..data_science import MODEL_VARIANTS
from .nodes import compare_models


def create_pipeline(**kwargs) -> Pipeline:
    """Create the reporting pipeline."""
    with warnings.catch_warnings():
        # Reading ``<namespace>.metrics`` from outside its namespace is the point
        # of this fan-in node; Kedro warns about any dotted name used that way.
        warnings.filterwarnings(
            "ignore", message="One or more dataset names contain '.'"
        )
        compare = Node(
            func=compare_models,
            inputs=[f"{name}.metrics" for name in MODEL_VARIANTS],
            outputs=["model_comparison", "best_model_name"],
            name="compare_models_node",
        )
    return Pipeline([compare])
