"""braincode.report"""
