"""Data: stimuli, responses and datasets, with loaders for real layouts and a synthetic ground truth."""

from braincode.data.core import Dataset, Responses, Split, Stimuli

__all__ = ["Dataset", "Responses", "Split", "Stimuli"]
