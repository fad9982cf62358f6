"""The ``data_science`` pipeline: one train/evaluate branch per model variant.

A single base pipeline is reused under several namespaces. The branches share the
train/test inputs but are otherwise independent, so a parallel runner (such as
the project's Dask runner) can execute them at the same time.
"""

from kedro.pipeline import Node, Pipeline

from .nodes import evaluate_model, tabulate_coefficients, train_model

#: Namespaces of the model branches; each reads ``params:<name>.model_options``.
MODEL_VARIANTS = ("linear", "ridge", "polynomial")

_SHARED_INPUTS = {"X_train", "X_test", "y_train", "y_test"}


def _base_pipeline() -> Pipeline:
    return Pipeline(
        [
            Node(
                func=train_model,
                inputs=["X_train", "y_train", "params:model_options"],
                outputs="regressor",
                name="train_model_node",
            ),
            Node(
                func=tabulate_coefficients,
                inputs="regressor",
                outputs="coefficients",
                name="tabulate_coefficients_node",
            ),
            Node(
                func=evaluate_model,
                inputs=["regressor", "X_test", "y_test", "params:model_options"],
                outputs="metrics",
                name="evaluate_model_node",
            ),
        ]
    )


def create_pipeline(**kwargs) -> Pipeline:
    """Create one namespaced copy of the training pipeline per model variant."""
    base = _base_pipeline()
    return sum(
        (
            Pipeline(
                base,
                inputs=_SHARED_INPUTS,
                parameters={"params:model_options": f"params:{name}.model_options"},
                namespace=name,
            )
            for name in MODEL_VARIANTS
        ),
        Pipeline([]),
    )
