"""braincode.kernels"""
