"""braincode.features"""
