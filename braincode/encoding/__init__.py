"""Encoding: voxel-wise models from features to responses (solvers, estimators, readouts, metrics)."""

from braincode.encoding.estimators import BandedRidgeEncoder, RidgeEncoder

__all__ = ["BandedRidgeEncoder", "RidgeEncoder"]
