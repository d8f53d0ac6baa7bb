"""Encoding: voxel-wise models from features to responses (solvers, estimators, readouts, metrics)."""

from braincode.encoding.estimators import RidgeEncoder
from braincode.encoding.readouts import FactorizedReadout, RoutingReadout, load_readout, roi_groups

__all__ = ["FactorizedReadout", "RoutingReadout", "load_readout", "roi_groups", "RidgeEncoder"]
