"""braincode.kernels: one tested family of softmax-attention kernels for readouts, BrainSCUBA and maps.

- :func:`attention` (backends reference, chunked, sdpa, triton, auto) and :func:`attention_probs`;
- :func:`softmax_project` and :func:`topk`: many queries over keys streamed in chunks from disk;
- ``braincode.kernels.triton``: fused Triton cross-attention for Lq >> Lk with an optional readout epilogue;
- ViT attention maps: :func:`capture_attention`, :func:`rollout`, :func:`attention_flow`, :func:`attention_map`.
"""

from braincode.kernels.attention import BACKENDS, attention, attention_probs, pick_backend
from braincode.kernels.maps import attention_flow, attention_map, capture_attention, record_attention, rollout
from braincode.kernels.streaming import softmax_project, topk

__all__ = [
    "BACKENDS",
    "attention",
    "attention_flow",
    "attention_map",
    "attention_probs",
    "capture_attention",
    "pick_backend",
    "record_attention",
    "rollout",
    "softmax_project",
    "topk",
]
