"""The authors' side of the transformer brain encoder: their parameter names, their checkpoints, their ROI masks.

``Hosseinadeli/transformer_brain_encoder`` names the decoder's parameters ``transformer.decoder.layers.0...``,
the queries ``query_embed.weight`` and the readouts ``lh_embed.0`` / ``rh_embed.0``; its ``main.py`` saves
``{"model": state_dict (backbone excluded), "args": argparse.Namespace, "epoch", "lr_scheduler", "val_perf"}``
with ``torch.save``. This module maps those names onto :class:`~braincode.encoding.readouts_routing.RoutingModule`
and reads such checkpoints with ``torch.load(weights_only=True)`` (only the argparse and numpy types they hold
are allowed).
"""

from __future__ import annotations

import argparse
import pickle  # only for its exception type: the file is read by torch.load(weights_only=True)
from pathlib import Path
from typing import Any

import numpy as np
import torch

from braincode.errors import ConfigError, DataFormatError, MissingFileError

_LAYER = "transformer.decoder.layers.0."
#: Our parameter name -> the authors' (the readout rows are lh then rh, see :func:`module_state`).
NAMES = {
    "query_embed": "query_embed.weight",
    "in_proj_weight": _LAYER + "multihead_attn.in_proj_weight",
    "in_proj_bias": _LAYER + "multihead_attn.in_proj_bias",
    "out_proj.weight": _LAYER + "multihead_attn.out_proj.weight",
    "out_proj.bias": _LAYER + "multihead_attn.out_proj.bias",
    "norm1.weight": _LAYER + "norm1.weight",
    "norm1.bias": _LAYER + "norm1.bias",
    "norm3.weight": _LAYER + "norm3.weight",
    "norm3.bias": _LAYER + "norm3.bias",
    "linear1.weight": _LAYER + "linear1.weight",
    "linear1.bias": _LAYER + "linear1.bias",
    "linear2.weight": _LAYER + "linear2.weight",
    "linear2.bias": _LAYER + "linear2.bias",
    "norm.weight": "transformer.decoder.norm.weight",
    "norm.bias": "transformer.decoder.norm.bias",
}
#: The authors' arguments this re-implementation reproduces (others are refused with a clear error).
SUPPORTED = {"enc_layers": (0,), "dec_layers": (1,), "pre_norm": (1, True), "position_embedding": ("sine",),
             "readout_res": ("rois_all", "voxels"), "return_interm": (False, 0, None)}


def check_args(args: dict[str, Any]) -> None:
    """Refuse configurations the published readout does not cover (with the argument that differs)."""
    for name, allowed in SUPPORTED.items():
        if name in args and args[name] not in allowed:
            raise ConfigError(f"the authors' argument {name}={args[name]!r} is not supported",
                              expected=f"{name} in {list(allowed)} (the published brain encoder)",
                              found=repr(args[name]))
    if "backbone_arch" in args and "dinov2" not in str(args["backbone_arch"]):
        raise ConfigError("only ViT (DINOv2) backbones: other backbones have an input projection we do not map",
                          expected="backbone_arch dinov2_q (or another dinov2 variant)", found=str(args["backbone_arch"]))


def module_state(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The authors' state dict as our parameter names (lh and rh readouts stacked, lh first)."""
    missing = [theirs for theirs in [*NAMES.values(), "lh_embed.0.weight", "rh_embed.0.weight"]
               if theirs not in state_dict]
    if missing:
        raise DataFormatError("the state dict lacks parameters of the authors' brain encoder",
                              expected="their names, e.g. " + ", ".join(missing[:3]), found=f"{len(state_dict)} keys",
                              fix="pass the checkpoint's 'model' entry, saved by their main.py")
    out = {ours: torch.as_tensor(state_dict[theirs]).float() for ours, theirs in NAMES.items()}
    out["readout_weight"] = torch.cat([state_dict["lh_embed.0.weight"], state_dict["rh_embed.0.weight"]]).float()
    out["readout_bias"] = torch.cat([state_dict["lh_embed.0.bias"], state_dict["rh_embed.0.bias"]]).float()
    return out


def block_masks(lh_roi_masks: Any, rh_roi_masks: Any) -> np.ndarray:
    """One ``(Q_lh + Q_rh, V_lh + V_rh)`` assignment from the two hemispheres' 0/1 masks (lh first).

    Examples
    --------
    >>> block_masks(np.ones((2, 3)), np.ones((1, 2))).astype(int).tolist()
    [[1, 1, 1, 0, 0], [1, 1, 1, 0, 0], [0, 0, 0, 1, 1]]
    """
    lh, rh = (np.asarray(m, dtype=np.float32) for m in (lh_roi_masks, rh_roi_masks))
    if lh.ndim != 2 or rh.ndim != 2 or not np.isin(lh, (0, 1)).all() or not np.isin(rh, (0, 1)).all():
        raise DataFormatError("ROI masks must be 0/1 arrays of shape (queries, vertices) per hemisphere",
                              found=f"shapes {lh.shape} and {rh.shape}")
    out = np.zeros((len(lh) + len(rh), lh.shape[1] + rh.shape[1]), dtype=np.float32)
    out[:len(lh), :lh.shape[1]] = lh
    out[len(lh):, lh.shape[1]:] = rh
    return out


def reference_query_masks(labels: np.ndarray, n_labels: list[int]) -> np.ndarray:
    """The authors' ``roi_masks(readout_res='rois_all')`` of one hemisphere from challenge-space label arrays.

    Parameters
    ----------
    labels : int array of shape (n_families, n_vertices)
        The ``{lh,rh}.<family>_challenge_space.npy`` arrays stacked in family order (0 = not in the family).
    n_labels : list of int
        Entries of each family's name map, ``0: "Unknown"`` included (``len(mapping_<family>.npy)``).

    Returns
    -------
    int64 array of shape (sum(n_labels - 1) + 1, n_vertices)
        One row per label value >= 1 of each family (even one without vertices), then the "unknown" row.

    Examples
    --------
    >>> reference_query_masks(np.array([[1, 0, 2], [0, 0, 1]]), [3, 2]).tolist()
    [[1, 0, 0], [0, 0, 1], [0, 0, 1], [0, 1, 0]]
    """
    labels = np.asarray(labels)
    rows = [labels[f] == value for f, n in enumerate(n_labels) for value in range(1, n)]
    rows.append(~np.any(labels > 0, axis=0))
    return np.stack(rows).astype(np.int64)


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The state dict and arguments of a ``checkpoint.pth`` written by the authors' ``main.py``.

    Read with ``torch.load(weights_only=True)``; ``argparse.Namespace``, ``torch.device`` and numpy scalars are
    the only non-tensor types allowed in.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError("no checkpoint", path=path, expected="checkpoint.pth written by their main.py "
                               "(--save_model 1)")
    allowed: list[Any] = [argparse.Namespace, np.dtype, np.float64, np.float32, np.int64]
    allowed += [type(np.dtype(t)) for t in ("float64", "float32", "int64")]
    allowed += [getattr(np, "_core", np).multiarray.scalar]
    try:
        with torch.serialization.safe_globals(allowed):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError) as exc:  # names the type that was refused
        raise DataFormatError("cannot read the checkpoint safely", path=path,
                              expected="a checkpoint of the authors' main.py (model state dict + args)",
                              found=str(exc).splitlines()[0][:200]) from None
    if not isinstance(checkpoint, dict) or "model" not in checkpoint:
        raise DataFormatError("not a checkpoint of the authors' main.py", path=path,
                              expected="a dict with 'model' and 'args'", found=type(checkpoint).__name__)
    args = checkpoint.get("args")
    args = vars(args) if isinstance(args, argparse.Namespace) else dict(args or {})
    state = {k: v for k, v in checkpoint["model"].items() if "backbone_model" not in k}
    return state, args
