"""Input validation shared by every attention backend: shapes, dtypes, devices and the key padding mask."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from braincode.errors import ConfigError

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@dataclass(frozen=True)
class AttentionShape:
    """Sizes of one attention call: q is (bq, heads, lq, d), k is (batch, heads, lk, d), v is (batch, heads, lk, dv)."""

    batch: int
    bq: int
    heads: int
    lq: int
    lk: int
    d: int
    dv: int

    @property
    def shared_queries(self) -> bool:
        """Whether one set of queries is broadcast over a batch of more than one key set."""
        return self.bq == 1 and self.batch > 1


def _describe(t: torch.Tensor) -> str:
    return f"shape {tuple(t.shape)}, dtype {t.dtype}, device {t.device}"


def check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor | None) -> AttentionShape:
    """Validate q (B or 1, H, Lq, d), k (B, H, Lk, d), v (B, H, Lk, dv) and return their sizes.

    ``v`` may be None (``attention_probs``), then dv is reported as d.
    """
    named = {"q": q, "k": k} if v is None else {"q": q, "k": k, "v": v}
    for name, t in named.items():
        if not isinstance(t, torch.Tensor):
            raise ConfigError(
                f"attention input {name} is not a torch tensor",
                expected="torch.Tensor", found=type(t).__name__, fix="convert with torch.as_tensor",
            )
        if t.ndim != 4:
            raise ConfigError(
                f"attention input {name} has the wrong number of dimensions",
                expected="4 dimensions (batch, heads, tokens, head_dim)", found=_describe(t),
                fix="add the missing axes, e.g. x[:, None] for a single head",
            )
        if t.dtype not in FLOAT_DTYPES:
            raise ConfigError(
                f"attention input {name} is not floating point",
                expected="float16, bfloat16, float32 or float64", found=_describe(t), fix="cast with .float()",
            )
        if t.dtype != q.dtype or t.device != q.device:
            raise ConfigError(
                f"attention inputs q and {name} differ in dtype or device",
                expected=f"dtype {q.dtype} on {q.device}", found=_describe(t), fix="move and cast all to one",
            )
    b, h, lk, d = k.shape
    if v is not None and (v.shape[0], v.shape[1], v.shape[2]) != (b, h, lk):
        raise ConfigError(
            "attention values v do not match keys k",
            expected=f"v of shape ({b}, {h}, {lk}, dv)", found=_describe(v), fix="pass one value per key",
        )
    if q.shape[0] not in (1, b) or q.shape[1] != h or q.shape[3] != d:
        raise ConfigError(
            "attention queries q do not match keys k",
            expected=f"q of shape ({b} or 1, {h}, Lq, {d})", found=_describe(q),
            fix="use the keys' head count and head dim; batch 1 shares the queries over the batch",
        )
    if lk == 0 or q.shape[2] == 0:
        raise ConfigError("attention needs at least one query and one key", found=f"q {_describe(q)}, k {_describe(k)}")
    dv = d if v is None else v.shape[3]
    return AttentionShape(batch=b, bq=q.shape[0], heads=h, lq=q.shape[2], lk=lk, d=d, dv=dv)


def check_mask(mask: torch.Tensor | None, shape: AttentionShape, device: torch.device) -> torch.Tensor | None:
    """Validate a key padding mask (B, Lk) of bools, True meaning "this key is padding, ignore it"."""
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        found = _describe(mask) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ConfigError(
            "key_padding_mask is not a boolean tensor",
            expected=f"torch.bool tensor of shape ({shape.batch}, {shape.lk}), True where the key is padding",
            found=found, fix="build it as lengths[:, None] <= torch.arange(Lk)",
        )
    if tuple(mask.shape) != (shape.batch, shape.lk) or mask.device != device:
        raise ConfigError(
            "key_padding_mask does not match the keys",
            expected=f"shape ({shape.batch}, {shape.lk}) on {device}", found=_describe(mask),
            fix="one row per batch item, one column per key",
        )
    full = mask.all(dim=1)
    if bool(full.any()):
        rows = torch.nonzero(full).flatten().tolist()
        raise ConfigError(
            "key_padding_mask marks every key of a batch item as padding, so its softmax is undefined",
            expected="at least one False (real key) per row", found=f"all True in rows {rows}",
            fix="drop those batch items or unmask at least one key",
        )
    return mask


def default_scale(scale: float | None, d: int) -> float:
    """``scale`` if given, else 1 / sqrt(d)."""
    return d**-0.5 if scale is None else float(scale)
