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
