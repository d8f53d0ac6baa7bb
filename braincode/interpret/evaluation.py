"""Honest evaluation of captions and images: held-out stimuli only, an independent scorer, labelled scores.

A caption (or synthesised image) is scored on stimuli the encoder never saw: a held-out part of the training split
(Algonauts test responses are not public), NSD's shared images, or a test split with responses. Scoring on the
encoder's own training stimuli is circular: :func:`check_heldout` refuses it unless asked, and then labels every
score ``"training (circular)"``. The sentence model that scores must not be the one that chose the captions
(:func:`check_scorer`). Every score sits beside its shuffled control (:func:`braincode.interpret.text_eval.
evaluate_captions`), with a flag when it does not beat it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from braincode.errors import ConfigError

log = logging.getLogger(__name__)

#: Labels of the stimuli a score was measured on.
VALIDATION, TEST, CIRCULAR = "validation", "test", "training (circular)"


def check_heldout(stimulus_ids: Sequence[str], train_ids: Sequence[str], *, allow_training: bool = False,
                  split: str = VALIDATION) -> str:
    """The label of scores measured on ``stimulus_ids``; refuses stimuli the encoder was fitted on.

    Parameters
    ----------
    stimulus_ids : the stimuli to score on
    train_ids : the stimuli the encoder was fitted on
    allow_training : bool
        Score anyway, labelled ``"training (circular)"``, with a warning.
    split : str
        Label when the stimuli are held out (``"validation"`` or ``"test"``).

    Examples
    --------
    >>> check_heldout(["c", "d"], ["a", "b"])
    'validation'
    >>> check_heldout(["a", "d"], ["a", "b"], allow_training=True)
    'training (circular)'
    """
    seen = set(map(str, train_ids))
    overlap = [s for s in map(str, stimulus_ids) if s in seen]
    if not overlap:
        return split
    if not allow_training:
        raise ConfigError(
            "caption evaluation on stimuli the encoder was fitted on is circular",
            expected="held-out stimuli (a held-out part of the training split, NSD shared images, or a test split "
                     "with responses)",
            found=f"{len(overlap)} of {len(stimulus_ids)} stimuli in the encoder's training set, e.g. {overlap[:3]}",
            fix="fit the encoder with a held-out fraction (caption --holdout 0.1), or allow it explicitly "
                "(--allow-training-eval) to get scores labelled 'training (circular)'",
        )
    log.warning("scoring on %d stimuli the encoder was fitted on: the scores are circular", len(overlap))
    return CIRCULAR


def check_scorer(producer: str | None, scorer: str, *, allow_same: bool = False) -> None:
    """Refuse scoring captions with the text model that produced (chose) them, unless ``allow_same``.

    Examples
    --------
    >>> check_scorer("open_clip:ViT-B-32@openai", "minilm")
    >>> check_scorer("minilm", "minilm", allow_same=True)
    """
    if not producer or producer.split("@")[0].removeprefix("hf:") != scorer.split("@")[0].removeprefix("hf:"):
        return
    if not allow_same:
        raise ConfigError("the captions would be scored by the text model that chose them",
                          expected="a scoring sentence model other than the captions' own",
                          found=f"both {scorer!r}",
                          fix="pass another sentence model (--score-model FOLDER), or --allow-same-scorer")
    log.warning("captions scored with %s, the model that chose them: scores are optimistic", scorer)


class HeldOut(NamedTuple):
    """The stimuli to score on: row indices into the split, ids, captions, responses and the scores' label."""

    index: np.ndarray
    ids: tuple[str, ...]
    captions: tuple[str, ...]
    responses: np.ndarray
    split: str


def heldout_stimuli(split, encoder, *, allow_training: bool = False) -> HeldOut:
    """The stimuli of ``split`` (a dataset split with responses and captions) that ``encoder`` never saw.

    With ``allow_training`` and no held-out stimuli, the whole split is returned, labelled circular.
    """
    if split.stimuli.captions is None:
        raise ConfigError("caption evaluation needs a caption per stimulus",
                          expected="captions.csv in the subject folder (columns image, caption)")
    ids = list(split.stimuli.ids)
    held = set(encoder.heldout_ids)
    index = np.array([i for i, s in enumerate(ids) if s in held], dtype=int)
    if len(index) == 0:
        index = np.arange(len(ids)) if allow_training else index
    label = check_heldout([ids[i] for i in index] or ids, encoder.train_ids or ids, allow_training=allow_training)
    if len(index) < 3:
        raise ConfigError("too few held-out stimuli to score captions on", expected="at least 3",
                          found=str(len(index)), fix="fit the encoder with a larger --holdout")
    return HeldOut(index, tuple(ids[i] for i in index), tuple(split.stimuli.captions[i] for i in index),
                   np.asarray(split.responses.data)[index], label)


def scorer_model(name: str | None = None, corpus: Sequence[str] = ()):
    """The sentence model that scores: ``"tfidf"`` (word TF-IDF fitted on ``corpus``), a sentence-transformers
    folder, or None for the offline MiniLM."""
    from braincode.interpret.text_eval import TfidfSentences, load_sentence_model

    return TfidfSentences(corpus) if name == "tfidf" else load_sentence_model(name)


def score_captions(captions: Sequence[str], held: HeldOut, *, rois=None, voxel_index: np.ndarray | None = None,
                   model=None, n_shuffles: int = 20, random_state: int = 0):
    """Score captions on held-out stimuli beside their shuffled control (:func:`~braincode.interpret.text_eval.
    evaluate_captions`): one caption per ROI of ``rois`` (scored against the ROI's mean response) or per voxel of
    ``voxel_index``.

    Examples
    --------
    >>> import pandas as pd
    >>> from braincode.data.rois import select_rois
    >>> held = HeldOut(np.arange(4), ("a", "b", "c", "d"), ("a face", "a house", "a smiling face", "a big house"),
    ...                np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.2], [0.1, 0.8]]), VALIDATION)
    >>> rois = select_rois(pd.DataFrame({"roi:floc-faces": ["FFA-1", "OFA"]}), "floc-faces")
    >>> table = score_captions(["a face", "a house"], held, rois=rois, n_shuffles=4)
    >>> table[["beats_shuffled", "split"]].values.tolist()
    [[True, 'validation'], [True, 'validation']]
    """
    from braincode.interpret.text_eval import evaluate_captions

    if (rois is None) == (voxel_index is None):
        raise ConfigError("score captions per ROI or per voxel", expected="rois= or voxel_index=, not both")
    y = held.responses[:, voxel_index] if rois is None else np.stack([held.responses[:, r.mask].mean(1) for r in rois],
                                                                     axis=1)
    return evaluate_captions(captions, held.captions, y, split=held.split, model=model, n_shuffles=n_shuffles,
                             random_state=random_state)
