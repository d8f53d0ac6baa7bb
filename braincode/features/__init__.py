"""Model features: extractors for open_clip, timm and transformers models or your own model
(:func:`extractor_from_model`), token pooling, and an on-disk cache.

Examples
--------
>>> from braincode.features import FeatureStore, get_extractor, pool_tokens  # doctest: +SKIP
>>> ext = get_extractor("open_clip:tiny-vit@random", layers=["pooled", "blocks.1"])  # doctest: +SKIP
>>> feats = ext.extract(stimuli, store=FeatureStore("cache"))  # doctest: +SKIP
>>> X = pool_tokens(feats["blocks.1"], num_prefix_tokens=ext.num_prefix_tokens, grid=ext.grid)  # doctest: +SKIP
"""

from braincode.features.custom import extractor_from_model
from braincode.features.design import FeatureSpec, extract_design
from braincode.features.extractor import Extractor
from braincode.features.model_id import ModelId, parse_model_id
from braincode.features.pooling import pool_tokens
from braincode.features.registry import SOURCES, get_extractor
from braincode.features.store import CacheKey, FeatureStore
from braincode.features.text import ClipTextExtractor, TextExtractor
from braincode.features.vision import VisionExtractor

__all__ = [
    "SOURCES",
    "CacheKey",
    "ClipTextExtractor",
    "Extractor",
    "FeatureSpec",
    "FeatureStore",
    "ModelId",
    "TextExtractor",
    "VisionExtractor",
    "extract_design",
    "extractor_from_model",
    "get_extractor",
    "parse_model_id",
    "pool_tokens",
]
