"""Data: stimuli, responses and datasets, with loaders for real layouts and a synthetic ground truth."""

from braincode.data.algonauts import (
    hemisphere_slices,
    load_algonauts,
    validate_algonauts,
    write_algonauts_predictions,
)
from braincode.data.core import Dataset, Responses, Split, Stimuli
from braincode.data.synthetic import SyntheticTruth, load_truth, make_synthetic

__all__ = [
    "Dataset",
    "Responses",
    "Split",
    "Stimuli",
    "SyntheticTruth",
    "hemisphere_slices",
    "load_algonauts",
    "load_truth",
    "make_synthetic",
    "validate_algonauts",
    "write_algonauts_predictions",
]
