"""braincode.interpret

Captions for voxels and ROIs (issue 8): :mod:`~braincode.interpret.bank` (image-embedding bank),
:mod:`~braincode.interpret.scuba` (BrainSCUBA), :mod:`~braincode.interpret.lavca` (LaVCa),
:mod:`~braincode.interpret.decoders` (ClipCap prefix and retrieval decoders), :mod:`~braincode.interpret.text_eval`
(the LaVCa sentence metric).
"""

from braincode.interpret.bank import EmbeddingBank, bank_from_arrays, build_bank, load_bank
from braincode.interpret.clipcap import PrefixDecoder
from braincode.interpret.decoders import CaptionDecoder, RetrievalDecoder
from braincode.interpret.lavca import describe
from braincode.interpret.scuba import caption_rois, project, roi_summaries
from braincode.interpret.scuba_encoder import LinearEncoder, fit_encoder, fit_encoder_on_images, load_encoder
from braincode.interpret.text_eval import evaluate_captions, vocabulary_size

__all__ = [
    "CaptionDecoder",
    "EmbeddingBank",
    "LinearEncoder",
    "PrefixDecoder",
    "RetrievalDecoder",
    "bank_from_arrays",
    "build_bank",
    "caption_rois",
    "describe",
    "evaluate_captions",
    "fit_encoder",
    "fit_encoder_on_images",
    "load_bank",
    "load_encoder",
    "project",
    "roi_summaries",
    "vocabulary_size",
]
