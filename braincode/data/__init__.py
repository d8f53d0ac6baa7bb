"""Data: stimuli, responses and datasets, with loaders for real layouts and a synthetic ground truth.

:func:`load_subject` loads one subject from any supported layout (Algonauts 2023, NSD, a NIfTI folder, a surface
folder); ROI families and selections live in :mod:`braincode.data.rois`.
"""

from braincode.data.algonauts import load_algonauts, validate_algonauts
from braincode.data.checks import check_fittable, integer_valued, require_captions
from braincode.data.core import Dataset, Responses, Split, Stimuli
from braincode.data.hdf5_stimuli import HDF5Stimuli
from braincode.data.layouts import detect_format, load_subject, validate_subject
from braincode.data.nsd import load_nsd
from braincode.data.predictions import hemisphere_slices, write_algonauts_predictions
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
    "check_fittable",
    "detect_format",
    "hemisphere_slices",
    "integer_valued",
    "load_algonauts",
    "load_nifti",
    "load_nsd",
    "load_subject",
    "load_surface",
    "load_truth",
    "make_synthetic",
    "require_captions",
    "validate_algonauts",
    "validate_subject",
    "write_algonauts_predictions",
]
