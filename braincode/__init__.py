"""braincode: brain-encoding analysis for neuro-AI.

Stages (data flows one way): :mod:`braincode.data` -> :mod:`braincode.features` -> :mod:`braincode.encoding`
-> :mod:`braincode.interpret` -> :mod:`braincode.report`, with :mod:`braincode.kernels` as the shared layer
below and :mod:`braincode.pipeline` running the stages per subject.
"""

__version__ = "0.1.0"
