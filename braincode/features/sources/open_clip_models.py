"""``open_clip:<name>@<tag>``: image towers of open_clip models, pretrained (from the local cache) or random."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch

from braincode.errors import ModelError
from braincode.features.model_id import ModelId
from braincode.features.text import ClipTextExtractor
from braincode.features.vision import VisionExtractor, hooked_run
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

#: Small open_clip architectures for tests and the offline demo (random weights only). Each replaces every
#: field of a built-in config, so the model is a real open_clip CLIP with a VisionTransformer image tower.
TINY_CONFIGS: dict[str, dict] = {
    "tiny-vit": {
        "embed_dim": 64,
        "vision_cfg": {"image_size": 224, "patch_size": 32, "width": 128, "head_width": 32, "layers": 4},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1},
    },
}
_TINY_BASE = "ViT-B-32"


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """Silence warnings on the root logger (where open_clip logs) for the duration of the block."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _cached_checkpoint(cfg: dict) -> tuple[Path | None, list[str]]:
    """The local file of an open_clip pretrained config, if cached, and the places looked in."""
    if cfg.get("file"):
        return (Path(cfg["file"]) if os.path.isfile(cfg["file"]) else None), [cfg["file"]]
    looked: list[str] = []
    if cfg.get("hf_hub"):
        repo, filename = os.path.split(cfg["hf_hub"])  # "org/repo/" (default file) or "org/repo/file"
        names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        if filename.endswith((".bin", ".pth", ".pt")):
            names.insert(0, filename.rsplit(".", 1)[0] + ".safetensors")
        looked.append(f"{hf_cache_dir()} (hub repo {repo}, files {', '.join(names)})")
        found = find_hf_cached(repo, names)
        if found is not None:
            return found, looked
    if cfg.get("url"):
        target = Path("~/.cache/clip").expanduser() / os.path.basename(cfg["url"])
        looked.append(str(target))
        if target.is_file():
            return target, looked
    return None, looked


def _create(mid: ModelId, device: torch.device) -> tuple[torch.nn.Module, Callable, str]:
    """The open_clip model of ``mid`` (both towers), its image preprocessing and its weights' fingerprint."""
    import open_clip

    name = mid.name
    tiny = name in TINY_CONFIGS
    if not tiny and name not in open_clip.list_models():
        raise unknown_name_error(
            "open_clip",
            name,
            [*TINY_CONFIGS, *open_clip.list_models()],
            "open_clip.list_models() plus braincode's " + ", ".join(TINY_CONFIGS),
        )
    tags = [] if tiny else open_clip.list_pretrained_tags_by_model(name)
    if not mid.is_random and mid.pretrained not in tags:
        raise ModelError(
            f"open_clip model {name} needs its weights named"
            if mid.pretrained is None
            else f"open_clip model {name} has no pretrained weights {mid.pretrained!r}",
            expected=f"{mid.source}:{name}@<weights> with <weights> one of {', '.join([*tags, 'random'])}",
            found=str(mid),
            fix=f"e.g. {mid.source}:{name}@{(tags or ['random'])[0]}",
        )
    if mid.is_random:
        # open_clip warns on the root logger that no pretrained weights were loaded: random weights were asked for
        with seeded(RANDOM_SEED), _quiet_root_logger():
            model, _, preprocess = open_clip.create_model_and_transforms(
                _TINY_BASE if tiny else name,
                pretrained=None,
                pretrained_text=False,
                device=device,
                **(TINY_CONFIGS[name] if tiny else {}),
            )
        return model, preprocess, f"random-seed{RANDOM_SEED}:{module_fingerprint(model)}"
    cfg = open_clip.get_pretrained_cfg(name, mid.pretrained)
    path, looked = _cached_checkpoint(cfg)
    if path is None:
        raise missing_weights_error(
            f"{mid.pretrained!r} of open_clip model {name}",
            looked,
            f"python -c \"import open_clip; open_clip.create_model_and_transforms('{name}', "
            f"pretrained='{mid.pretrained}')\"",
        )
    model, _, preprocess = open_clip.create_model_and_transforms(
        name,
        pretrained=str(path),
        device=device,
        force_quick_gelu=bool(cfg.get("quick_gelu", False)),
        image_mean=cfg.get("mean"),
        image_std=cfg.get("std"),
        image_interpolation=cfg.get("interpolation"),
        image_resize_mode=cfg.get("resize_mode"),
    )
    return model, preprocess, f"{mid.pretrained}:{file_fingerprint(path)}"


def build(mid: ModelId, *, layers: Sequence[str] | None, device: torch.device) -> VisionExtractor:
    """Build the image extractor of ``open_clip:<name>@<tag>`` (``@random``: seeded random weights)."""
    import open_clip

    model, preprocess, fingerprint = _create(mid, device)
    visual = model.visual
    is_vit = isinstance(visual, open_clip.transformer.VisionTransformer)
    blocks = list(visual.transformer.resblocks) if is_vit else []
    return VisionExtractor(
        model_id=str(mid),
        model=model,
        requested=layers,
        fingerprint=fingerprint,
        preprocess=repr(preprocess),
        device=device,
        transform=preprocess,
        run=hooked_run(
            model.encode_image,
            blocks,
            batch_first=getattr(visual.transformer, "batch_first", True) if is_vit else True,
        ),
        n_blocks=len(blocks),
        num_prefix_tokens=1 if is_vit else None,
        grid=tuple(visual.grid_size) if is_vit else None,
    )


def _tokenizer(name: str) -> Callable:
    """open_clip's tokenizer for ``name``, refusing to download a Hugging Face tokenizer."""
    import open_clip

    cfg = open_clip.get_model_config(_TINY_BASE if name in TINY_CONFIGS else name) or {}
    hf_name = cfg.get("text_cfg", {}).get("hf_tokenizer_name")
    if hf_name and find_hf_cached(hf_name, ["tokenizer_config.json", "tokenizer.json"]) is None:
        raise missing_weights_error(
            f"(tokenizer {hf_name}) of open_clip model {name}",
            [f"{hf_cache_dir()} (hub repo {hf_name})"],
            f"python -c \"import open_clip; open_clip.get_tokenizer('{name}')\"",
        )
    return open_clip.get_tokenizer(_TINY_BASE if name in TINY_CONFIGS else name)


def build_text(mid: ModelId, *, layers: Sequence[str] | None, device: torch.device) -> ClipTextExtractor:
    """Build the text extractor of ``open_clip_text:<name>@<tag>``: ``"pooled"`` = ``encode_text``, unnormalised.

    Its embeddings share a space with the image extractor's ``"pooled"`` of the same id under ``open_clip:``.
    """
    model, _, fingerprint = _create(mid, device)
    tokenizer = _tokenizer(mid.name)
    return ClipTextExtractor(
        model_id=str(mid),
        model=model,
        requested=layers,
        fingerprint=fingerprint,
        preprocess=f"{type(tokenizer).__name__}(context_length={getattr(tokenizer, 'context_length', None)})",
        device=device,
        tokenizer=tokenizer,
    )
