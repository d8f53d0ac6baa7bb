"""Encoding: voxel-wise models from features to responses (solvers, estimators, readouts, metrics)."""

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

__all__ = ["ROUTING_PRESETS", "BandedRidgeEncoder", "FactorizedReadout", "ReadoutEnsemble", "RidgeEncoder",
           "RoutingReadout", "load_readout", "load_reference_checkpoint", "roi_query_masks"]
