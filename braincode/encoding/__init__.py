"""Encoding: voxel-wise models from features to responses (solvers, estimators, readouts, metrics)."""
