"""``get_extractor``: model id -> :class:`Extractor`, dispatched on the id's source."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from braincode.devices import resolve_device
from braincode.errors import ModelError
from braincode.features.extractor import Extractor
from braincode.features.model_id import parse_model_id
from braincode.features.sources import hf_models, open_clip_models, timm_models

#: Source name -> builder ``build(model_id, layers=..., device=...)``.
SOURCES: dict[str, Callable[..., Extractor]] = {
    "open_clip": open_clip_models.build,
    "open_clip_text": open_clip_models.build_text,
    "timm": timm_models.build,
    "hf": hf_models.build,
}


def get_extractor(model_id: str, layers: Sequence[str] | None = None, device: str = "auto") -> Extractor:
    """Build the feature extractor of ``model_id``.

    Parameters
    ----------
    model_id : str
        ``source:name[@pretrained]``: ``open_clip:ViT-B-32@openai``, ``open_clip:tiny-vit@random``
        (image towers), ``open_clip_text:ViT-B-32@openai`` (the text tower, same embedding space),
        ``timm:vit_base_patch16_224[@tag|@random]``, ``hf:<repo-or-folder>[@random]``, or the alias ``minilm``.
        DINOv2 (``timm:vit_base_patch14_dinov2@lvd142m``, ``hf:facebook/dinov2-base``) is fed as the transformer
        brain encoder feeds it (zero-padded to a multiple of 14).
        Pretrained weights must already be on this machine; ``@random`` (seeded, so always the same weights) is
        used only when asked for.
    layers : sequence of str, optional
        Layers to return (default ``["pooled"]``); see ``Extractor.layers`` for the names a model offers:
        vision ``"pooled"``, ``"blocks.{i}"`` and, where the blocks have one, ``"blocks.{i}.q"`` (the attention
        query projection: the transformer brain encoder reads DINOv2's ``blocks.11.q``); text ``"pooled"``,
        ``"hidden.{i}"``.
    device : {"auto", "cpu", "cuda"}
        Where the model runs (``"auto"``: CUDA when available).

    Returns
    -------
    Extractor

    See Also
    --------
    braincode.features.extractor_from_model : an extractor for your own ``nn.Module``.

    Raises
    ------
    ModelError
        Unknown source or model name (the message lists valid ones), or pretrained weights not cached locally.
    ConfigError
        A layer the model does not have (the message lists those it has).

    Examples
    --------
    >>> ext = get_extractor("open_clip:tiny-vit@random", layers=["pooled", "blocks.1"], device="cpu")
    >>> ext.kind, ext.num_prefix_tokens, ext.grid, ext.layers[:3]
    ('vision', 1, (7, 7), ['pooled', 'blocks.0', 'blocks.1'])
    """
    mid = parse_model_id(model_id)
    if mid.source not in SOURCES:
        raise ModelError(
            f"unknown model source {mid.source!r} in {model_id!r}",
            expected=f"one of {', '.join(SOURCES)}",
            found=repr(mid.source),
            fix="write the id as source:name, e.g. open_clip:ViT-B-32@openai",
        )
    return SOURCES[mid.source](mid, layers=layers, device=resolve_device(device))
