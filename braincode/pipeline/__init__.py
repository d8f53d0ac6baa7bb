"""braincode.pipeline"""
