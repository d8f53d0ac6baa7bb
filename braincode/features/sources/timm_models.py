"""``timm:<name>[@<tag>|@random]``: timm image models; ``blocks.{i}`` for ViT-style models with ``.blocks``.

ViTs with a fused ``qkv`` projection also offer ``blocks.{i}.q``: the attention query of block ``i`` (its first
``embed_dim`` channels), tokens laid out as ``blocks.{i}``. DINOv2 models (``vit_*_patch14_dinov2``) are fed as
the transformer brain encoder feeds them (:class:`~braincode.features.vision.PatchPad`: normalised, zero-padded to
a multiple of 14, position embeddings interpolated to the grid), e.g. ``timm:vit_base_patch14_dinov2@lvd142m``
with layer ``blocks.11.q``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from braincode.errors import ModelError
from braincode.features.model_id import ModelId
from braincode.features.vision import Facet, PatchPad, VisionExtractor, hooked_run
from braincode.features.weights import (
    RANDOM_SEED,
    file_fingerprint,
    find_hf_cached,
    hf_cache_dir,
    missing_weights_error,
    module_fingerprint,
    seeded,
    unknown_name_error,
)


def _cached_checkpoint(cfg) -> tuple[Path | None, bool, list[str]]:
    """(local file or None, whether the file needs the model's custom loader, places looked in)."""
    if cfg.file:
        return (Path(cfg.file) if os.path.isfile(cfg.file) else None), bool(cfg.custom_load), [cfg.file]
    looked: list[str] = []
    if cfg.hf_hub_id:
        names = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
        looked.append(f"{hf_cache_dir()} (hub repo {cfg.hf_hub_id}, files {', '.join(names)})")
        found = find_hf_cached(cfg.hf_hub_id, names)
        if found is not None:
            return found, False, looked
    if cfg.url:
        target = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(cfg.url)
        looked.append(str(target))
        if target.is_file():
            return target, bool(cfg.custom_load), looked
    return None, False, looked


def query_facets(blocks: list[torch.nn.Module], width: int) -> dict[str, Facet]:
    """``blocks.{i}.q`` for blocks whose attention has a fused ``qkv`` Linear: its first ``width`` channels."""
    return {f"blocks.{i}.q": (block.attn.qkv, lambda out, d=width: out[..., :d])
            for i, block in enumerate(blocks) if isinstance(getattr(getattr(block, "attn", None), "qkv", None),
                                                             torch.nn.Linear)}


def _create(mid: ModelId) -> tuple[torch.nn.Module, str]:
    """The timm model (classifier removed: its output is the pooled pre-logits embedding) and its fingerprint."""
    import timm

    arch = mid.name.split(".")[0]
    if arch not in timm.list_models():
        raise unknown_name_error("timm", arch, timm.list_models(), "timm.list_models()")
    extra = {"dynamic_img_size": True} if "dinov2" in arch else {}
    if mid.is_random:
        with seeded(RANDOM_SEED):
            model = timm.create_model(arch, pretrained=False, num_classes=0, **extra)
        return model, f"random-seed{RANDOM_SEED}:{module_fingerprint(model)}"
    full = mid.name if mid.pretrained is None else f"{arch}.{mid.pretrained}"
    try:
        cfg = timm.models.get_pretrained_cfg(full, allow_unregistered=True)
    except RuntimeError:  # a tag the architecture does not have
        cfg = None
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        tags = [n.split(".", 1)[1] for n in timm.list_pretrained(f"{arch}.*")]
        raise ModelError(
            f"timm has no pretrained weights {full!r}",
            expected=f"timm:{arch}@<tag> with <tag> one of {', '.join([*tags, 'random'])}",
            found=str(mid),
            fix=f"e.g. timm:{arch}@{(tags or ['random'])[0]}",
        )
    path, custom, looked = _cached_checkpoint(cfg)
    if path is None:
        raise missing_weights_error(
            f"{full!r} (timm)",
            looked,
            f"python -c \"import timm; timm.create_model('{full}', pretrained=True)\"",
        )
    model = timm.create_model(
        full,
        pretrained=True,
        num_classes=0,
        pretrained_cfg_overlay={"file": str(path), "custom_load": custom},
        **extra,
    )
    return model, f"{full}:{file_fingerprint(path)}"


def build(mid: ModelId, *, layers: Sequence[str] | None, device: torch.device) -> VisionExtractor:
    """Build the extractor of ``timm:<name>[@<tag>]``; ``@random`` gives seeded random weights."""
    import timm.data

    model, fingerprint = _create(mid)
    model = model.to(device)
    data_config = timm.data.resolve_model_data_config(model)
    transform = timm.data.create_transform(**data_config, is_training=False)
    is_vit = (
        hasattr(model, "blocks") and hasattr(model, "patch_embed") and hasattr(model, "num_prefix_tokens")
    )
    blocks = list(model.blocks) if is_vit else []
    grid = tuple(model.patch_embed.grid_size) if is_vit else None
    if is_vit and "dinov2" in mid.name:
        transform = PatchPad(model.patch_embed.patch_size[0], data_config["mean"], data_config["std"])
        grid = transform.grid
    return VisionExtractor(
        model_id=str(mid),
        model=model,
        requested=layers,
        fingerprint=fingerprint,
        preprocess=repr(transform),
        device=device,
        transform=transform,
        run=hooked_run(model, blocks),
        n_blocks=len(blocks),
        num_prefix_tokens=int(model.num_prefix_tokens) if is_vit else None,
        grid=grid,
        facets=query_facets(blocks, int(getattr(model, "embed_dim", 0))) if is_vit else None,
    )
