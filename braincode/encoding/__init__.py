"""Encoding: voxel-wise models from features to responses (solvers, estimators, readouts, metrics)."""

from braincode.encoding.estimators import BandedRidgeEncoder, RidgeEncoder
from braincode.encoding.readouts import FactorizedReadout, RoutingReadout, load_readout, roi_groups

__all__ = ["BandedRidgeEncoder", "FactorizedReadout", "RidgeEncoder", "RoutingReadout", "load_readout", "roi_groups"]
