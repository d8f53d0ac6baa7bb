"""braincode.interpret"""
