"""braincode.interpret: what voxels and ROIs prefer, in words (BrainSCUBA, LaVCa) and images (BrainDiVE).

- :mod:`~braincode.interpret.scuba_encoder` (linear encoder on L2-normalised CLIP embeddings, the published AdamW
  recipe), :mod:`~braincode.interpret.bank` (image-embedding bank), :mod:`~braincode.interpret.scuba` (projection,
  per-voxel captions, ROI summaries), :mod:`~braincode.interpret.clipcap` (ClipCap, the published decoder),
  :mod:`~braincode.interpret.decoders` (retrieval baseline);
- :mod:`~braincode.interpret.lavca` and :mod:`~braincode.interpret.lavca_components` (published pipeline with local
  models, or the explicit simplified mode);
- :mod:`~braincode.interpret.dive` (guided diffusion with self-attention guidance),
  :mod:`~braincode.interpret.dive_objectives`, :mod:`~braincode.interpret.dive_encoder`,
  :mod:`~braincode.interpret.dive_runs`;
- :mod:`~braincode.interpret.evaluation` and :mod:`~braincode.interpret.text_eval` (held-out, labelled scores beside
  a shuffled control).
"""

from braincode.interpret.bank import EmbeddingBank, bank_from_arrays, load_bank
from braincode.interpret.bank_build import build_bank
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
