"""Encoding: voxel-wise models from features to responses (solvers, estimators, readouts, metrics)."""

from braincode.data.rois import roi_groups
from braincode.encoding.estimators import BandedRidgeEncoder, RidgeEncoder
from braincode.encoding.readouts import FactorizedReadout, RoutingReadout, load_readout

__all__ = ["BandedRidgeEncoder", "FactorizedReadout", "RidgeEncoder", "RoutingReadout", "load_readout", "roi_groups"]
