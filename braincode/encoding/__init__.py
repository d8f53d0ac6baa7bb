"""Encoding: voxel-wise models from features to responses (solvers, estimators, readouts, metrics), and the
analysis API that cross-validates them over voxels."""

from braincode.data.rois import roi_groups
from braincode.encoding.analysis import VoxelCVResult, cross_validate_voxels, make_encoder
from braincode.encoding.estimators import BandedRidgeEncoder, RidgeEncoder
from braincode.encoding.readouts import FactorizedReadout, RoutingReadout, load_readout

__all__ = [
    "BandedRidgeEncoder",
    "FactorizedReadout",
    "RidgeEncoder",
    "RoutingReadout",
    "VoxelCVResult",
    "cross_validate_voxels",
    "load_readout",
    "make_encoder",
    "roi_groups",
]
