"""braincode.kernels: one tested family of softmax-attention kernels for readouts, BrainSCUBA and maps.

- :func:`attention` (backends reference, chunked, sdpa, triton, auto) and :func:`attention_probs`;
- :func:`softmax_project` and :func:`topk`: many queries over keys streamed in chunks from disk;
- attention maps of ViT backbones (``braincode.kernels.maps``): capture, rollout, flow.
"""

from braincode.kernels.attention import BACKENDS, attention, attention_probs, pick_backend
from braincode.kernels.streaming import softmax_project, topk

__all__ = ["BACKENDS", "attention", "attention_probs", "pick_backend", "softmax_project", "topk"]
