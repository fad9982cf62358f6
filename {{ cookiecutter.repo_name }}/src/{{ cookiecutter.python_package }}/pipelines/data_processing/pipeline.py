"""The ``data_processing`` pipeline: raw extract to train/test matrices."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    create_model_input_table,
    generate_raw_sales,
    preprocess_sales,
    split_data,
)


def create_pipeline(**kwargs) -> Pipeline:
    """Create the data processing pipeline."""
    return Pipeline(
        [
            Node(
                func=generate_raw_sales,
                inputs="params:raw_data",
                outputs="raw_sales",
                name="generate_raw_sales_node",
            ),
            Node(
                func=preprocess_sales,
                inputs="raw_sales",
                outputs="preprocessed_sales",
                name="preprocess_sales_node",
            ),
            Node(
                func=create_model_input_table,
                inputs=["preprocessed_sales", "params:features"],
                outputs="model_input_table",
                name="create_model_input_table_node",
            ),
            Node(
                func=split_data,
                inputs=["model_input_table", "params:split"],
                outputs=["X_train", "X_test", "y_train", "y_test"],
                name="split_data_node",
            ),
        ]
    )
