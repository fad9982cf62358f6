"""Generate, clean and featurise the daily store sales used by the models."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
