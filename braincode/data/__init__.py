"""Data: stimuli, responses and datasets, with loaders for real layouts and a synthetic ground truth."""

from braincode.data.algonauts import (
    hemisphere_slices,
    load_algonauts,
    validate_algonauts,
    write_algonauts_predictions,
)
from braincode.data.core import Dataset, Responses, Split, Stimuli
from braincode.data.nsd import HDF5Stimuli, load_nsd
from braincode.data.surface import load_surface
from braincode.data.synthetic import SyntheticTruth, load_truth, make_synthetic
from braincode.data.volume import load_nifti

__all__ = [
    "Dataset",
    "HDF5Stimuli",
    "Responses",
    "Split",
    "Stimuli",
    "SyntheticTruth",
    "hemisphere_slices",
    "load_algonauts",
    "load_nifti",
    "load_nsd",
    "load_surface",
    "load_truth",
    "make_synthetic",
    "validate_algonauts",
    "write_algonauts_predictions",
]
