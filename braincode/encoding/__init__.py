"""Encoding: voxel-wise models from features to responses (solvers, estimators, readouts, metrics), and the
analysis API that cross-validates them over voxels."""

from braincode.encoding.analysis import VoxelCVResult, cross_validate_voxels, make_encoder
from braincode.encoding.estimators import BandedRidgeEncoder, RidgeEncoder
from braincode.encoding.readouts import (
    ROUTING_PRESETS,
    FactorizedReadout,
    ReadoutEnsemble,
    RoutingReadout,
    load_readout,
    load_reference_checkpoint,
    roi_query_masks,
)
from braincode.encoding.readouts_fit import fit_readout

__all__ = ["ROUTING_PRESETS", "BandedRidgeEncoder", "FactorizedReadout", "ReadoutEnsemble", "RidgeEncoder",
           "RoutingReadout", "VoxelCVResult", "cross_validate_voxels", "fit_readout", "load_readout",
           "load_reference_checkpoint", "make_encoder", "roi_query_masks"]
