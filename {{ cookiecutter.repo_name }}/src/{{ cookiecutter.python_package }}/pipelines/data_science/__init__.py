"""Train and evaluate several demand models, one independent branch per model."""

from .pipeline import MODEL_VARIANTS, create_pipeline

__all__ = ["MODEL_VARIANTS", "create_pipeline"]
