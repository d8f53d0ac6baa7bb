"""``braincode bank`` and ``braincode caption``: voxel and ROI captions by BrainSCUBA or LaVCa.

::

    braincode bank --images DIR --model open_clip:ViT-B-32@openai --out BANK
    braincode caption --fit OUT --method scuba --bank BANK --decoder coco_weights.pt --gpt2 GPT2 \\
        --roi floc-faces --out captions.csv [--data ROOT --subject subj01] [--evaluate]

The encoder (``OUT/scuba_encoder/``, :mod:`braincode.persist`) is BrainSCUBA's linear map on L2-normalised
embeddings of the bank's model, fitted there when missing (``--encoder published``: the paper's AdamW recipe on
augmented images) with ``--holdout`` of the training images left out. ``--evaluate`` scores the captions on those
held-out images only, beside a shuffled-caption control. ``captions.json`` beside the CSV records every component
that produced it.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from braincode.errors import ConfigError

if TYPE_CHECKING:  # imported where used, so that `braincode --help` stays fast
    import numpy as np
    import pandas as pd

log = logging.getLogger(__name__)

ENCODER_DIR = "scuba_encoder"


def _training_split(args: argparse.Namespace):
    if args.data is None or args.subject is None:
        return None
    from braincode.data import load_algonauts

    return load_algonauts(args.data, args.subject)["train"]


def _encoder(args: argparse.Namespace, bank, train):
    """The encoder in ``--fit``, fitted there first from ``--data``/``--subject`` when missing."""
    from braincode.interpret.scuba_encoder import fit_encoder, fit_encoder_on_images, load_encoder

    folder = args.fit / ENCODER_DIR
    if (folder / "config.json").is_file():
        encoder = load_encoder(folder)
        if bank.model_id and encoder.model_id and encoder.model_id != bank.model_id:
            raise ConfigError("the encoder and the bank use different models", path=folder,
                              expected=f"an encoder fitted on {bank.model_id} embeddings",
                              found=encoder.model_id, fix="fit the encoder again with this bank (new --fit folder)")
        return encoder
    if train is None:
        raise ConfigError("no encoder in the --fit folder", path=folder, expected="a saved BrainSCUBA encoder",
                          fix="pass --data ROOT --subject S to fit one into that folder")
    if args.encoder == "published":
        if bank.source != "images":
            raise ConfigError("the published encoder reads images through the bank's image model",
                              expected="a bank of image embeddings (e.g. open_clip:ViT-B-32@openai)",
                              found=f"a {bank.source} bank of {bank.model_id}", fix="pass --encoder adamw or ridge")
        encoder = fit_encoder_on_images(train.stimuli, train.responses.data, train.responses.voxels, bank.model_id,
                                        holdout=args.holdout, device=args.device)
    else:
        from braincode.features import FeatureStore

        x = bank.embed(train.stimuli, store=FeatureStore(args.cache) if args.cache else None, device=args.device)
        encoder = fit_encoder(x, train.responses.data, train.responses.voxels, method=args.encoder,
                              model_id=bank.model_id, ids=train.stimuli.ids, holdout=args.holdout, device=args.device)
    encoder.save(folder)
    log.info("fitted the %s encoder on %d images (%d held out) into %s", encoder.method, len(encoder.train_ids),
             len(encoder.heldout_ids), folder)
    return encoder


def _decoder(args: argparse.Namespace, bank):
    """ClipCap (``--decoder``: a ClipCap checkpoint with ``--gpt2``, or a ``train-decoder`` folder) or, with
    ``--retrieval``, the nearest-bank-caption baseline; returns the decoder and its description."""
    if args.retrieval:
        from braincode.interpret.decoders import RetrievalDecoder

        encode = bank.text_encoder() if bank.source == "images" else None
        return RetrievalDecoder.from_bank(bank, encode_text=encode), "retrieval of the nearest bank caption (baseline)"
    if args.decoder is None:
        raise ConfigError("BrainSCUBA decodes each voxel's projection with ClipCap",
                          expected="--decoder (a ClipCap .pt with --gpt2 FOLDER, or a train-decoder folder)",
                          fix="pass --decoder, or --retrieval for the nearest-caption baseline")
    from braincode.interpret.clipcap import PrefixDecoder

    if args.decoder.suffix == ".pt":
        if args.gpt2 is None:
            raise ConfigError("a ClipCap checkpoint needs its GPT-2", fix="pass --gpt2 GPT2_FOLDER (config, tokenizer)")
        from transformers import AutoTokenizer

        decoder = PrefixDecoder.from_clipcap(args.decoder, args.gpt2, tokenizer=AutoTokenizer.from_pretrained(args.gpt2))
        return decoder.to(_device(args)), f"ClipCap {args.decoder.name} (published decoder)"
    return PrefixDecoder.load(args.decoder, device=args.device), f"prefix decoder {args.decoder} (ClipCap architecture)"


def _device(args: argparse.Namespace):
    from braincode.devices import resolve_device

    return resolve_device(args.device)


def _scuba(args, bank, encoder, voxel_index: np.ndarray, units) -> tuple[pd.DataFrame, dict]:
    import numpy as np
    import pandas as pd

    from braincode.interpret.scuba import caption_voxels, project, roi_summaries

    decoder, described = _decoder(args, bank)
    proj = project(encoder.coef[voxel_index], bank, temperature=args.temperature, device=args.device)
    captions = np.full(len(encoder.voxels), "", dtype=object)
    captions[voxel_index] = caption_voxels(proj, decoder)
    table = pd.DataFrame({"caption": captions[voxel_index]}) if units is None else \
        roi_summaries(captions.tolist(), units).drop(columns=["family", "roi", "voxels"])
    return table, {"projection": f"softmax({args.temperature:g} cos) over the bank (published)", "decoder": described,
                   "roi_summary": None if units is None else "most frequent voxel caption and words of the ROI"}


def _lavca(args, bank, encoder, voxel_index: np.ndarray, units) -> tuple[pd.DataFrame, dict]:
    import numpy as np

    from braincode.interpret import lavca

    weights = encoder.coef[voxel_index] if units is None else np.stack([encoder.coef[u.mask].mean(0) for u in units])
    parts = lavca.components(bank, captioner=args.captioner, lm=args.lm, simplified=args.simplified,
                             device=args.device)
    table = lavca.describe(weights, bank, parts=parts, n_top=args.n_top, n_keywords=args.n_keywords,
                           device=args.device)
    return table, {"lavca": table.attrs["components"]}


def _units(args, encoder, top: np.ndarray | None):
    import numpy as np

    from braincode.data.rois import Roi, select_rois

    if not args.roi:
        return None
    units = select_rois(encoder.voxels, args.roi)
    if top is not None:
        keep = np.zeros(len(encoder.voxels), dtype=bool)
        keep[top] = True
        units = [Roi(u.family, u.name, u.mask & keep) for u in units]
        dropped = [u.name for u in units if not u.mask.any()]
        if dropped:
            log.warning("ROIs without any of the top %d voxels are left out: %s", len(top), dropped)
        units = [u for u in units if u.mask.any()]
    return units


def _evaluate(args, table: pd.DataFrame, train, encoder, voxel_index, units) -> tuple[pd.DataFrame, dict]:
    from braincode.interpret.evaluation import check_scorer, heldout_stimuli, score_captions, scorer_model

    if train is None:
        raise ConfigError("--evaluate needs the measured responses", fix="pass --data ROOT --subject S")
    if train.responses.data.shape[1] != len(encoder.voxels):
        raise ConfigError("the dataset and the encoder have different voxels", expected=f"{len(encoder.voxels)}",
                          found=str(train.responses.data.shape[1]), fix="use the --data/--subject of the fit")
    scorer = str(args.score_model) if args.score_model else "minilm"
    # with a caption bank, the weights, the projection and the keywords all live in that text model's space
    check_scorer(encoder.model_id if args.bank_source == "captions" else None, scorer,
                 allow_same=args.allow_same_scorer)
    held = heldout_stimuli(train, encoder, allow_training=args.allow_training_eval)
    model = scorer_model(None if args.score_model is None else scorer, held.captions)
    scores = score_captions(table["caption"], held, rois=units, voxel_index=None if units else voxel_index,
                            model=model)
    table = table.assign(**{c: scores[c].to_numpy() for c in ("spearman", "spearman_shuffled", "p_shuffled",
                                                              "beats_shuffled", "split")})
    return table, {"split": held.split, "n_stimuli": len(held.ids), "scorer": scorer,
                   "score": "Spearman r of caption-stimulus similarity with measured activity (LaVCa metric)"}


def run(args: argparse.Namespace) -> int:
    """Run ``braincode caption``; returns the exit status."""
    import numpy as np
    import pandas as pd

    from braincode.atomic import atomic_write
    from braincode.interpret.bank import load_bank, warn_subject_overlap
    from braincode.interpret.text_eval import vocabulary_size

    bank = load_bank(args.bank)
    args.bank_source = bank.source
    train = _training_split(args)
    overlap = warn_subject_overlap(bank, train.stimuli) if train is not None else None
    encoder = _encoder(args, bank, train)
    top = encoder.top_voxels(args.top_voxels) if args.top_voxels else None
    units = _units(args, encoder, top)
    voxel_index = np.sort(top) if top is not None else np.arange(len(encoder.voxels))
    if units is not None:
        voxel_index = np.flatnonzero(np.any([u.mask for u in units], axis=0))
    table, components = (_scuba if args.method == "scuba" else _lavca)(args, bank, encoder, voxel_index, units)
    if units is None:
        head = encoder.voxels.iloc[voxel_index].reset_index(drop=True)
        if encoder.val_r is not None:
            head = head.assign(val_r=np.asarray(encoder.val_r)[voxel_index])
    else:
        head = pd.DataFrame({"family": [u.family for u in units], "roi": [u.name for u in units],
                             "voxels": [int(u.mask.sum()) for u in units]})
    table = pd.concat([head, table.reset_index(drop=True)], axis=1)
    record = {"method": args.method, "components": components, "bank": {
        "path": str(args.bank), "n": len(bank), "model_id": bank.model_id, "source": bank.source,
        "subject_stimuli_in_bank": overlap}, "encoder": {
        "method": encoder.method, "model_id": encoder.model_id, "n_train": len(encoder.train_ids),
        "n_heldout": len(encoder.heldout_ids), "val_r": "Pearson r on the held-out stimuli (validation)"},
        "top_voxels": args.top_voxels}
    if args.evaluate:
        table, record["evaluation"] = _evaluate(args, table, train, encoder, voxel_index if units is None else None,
                                                units)
    atomic_write(args.out, lambda p: table.to_csv(p, index=False))
    atomic_write(args.out.with_suffix(".json"), lambda p: p.write_text(json.dumps(record, indent=2, default=str)))
    print(f"wrote {len(table)} {args.method} captions to {args.out} "
          f"(vocabulary: {vocabulary_size(table['caption'])} words; components in {args.out.with_suffix('.json')})")
    if units is not None:
        columns = [c for c in ("roi", "caption", "spearman", "spearman_shuffled", "beats_shuffled", "split")
                   if c in table]
        with pd.option_context("display.width", 160, "display.max_colwidth", 90, "display.float_format",
                               "{:.3f}".format):
            print(table[columns].to_string(index=False))
    return 0


def _cmd_bank(args: argparse.Namespace) -> int:
    from braincode.features import FeatureStore
    from braincode.interpret.bank_build import build_bank

    bank = build_bank(args.images, args.model, args.out, layer=args.layer, from_captions=args.from_captions,
                      store=FeatureStore(args.cache) if args.cache else None, device=args.device)
    print(f"wrote a bank of {len(bank)} embeddings (D={bank.dim}, {bank.source} through {args.model}) to {args.out}"
          f"{'' if bank.captions is None else ', with captions'}")
    return 0


def register(subparsers) -> None:
    """Add ``bank`` and ``caption`` to the ``braincode`` sub-commands."""
    p = subparsers.add_parser("bank", help="embed a folder (or HDF5 file) of images into a caption bank")
    p.add_argument("--images", type=Path, required=True, help="image folder (captions.csv beside) or .h5 file")
    p.add_argument("--model", required=True, help="model id, e.g. open_clip:ViT-B-32@openai")
    p.add_argument("--layer", default="pooled")
    p.add_argument("--from-captions", action="store_true",
                   help="embed the captions with a text model (e.g. --model minilm) instead of the images")
    p.add_argument("--cache", type=Path, help="feature cache folder")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--out", type=Path, required=True, help="bank folder to write")
    p.set_defaults(func=_cmd_bank)

    p = subparsers.add_parser("caption", help="voxel or ROI captions by BrainSCUBA or LaVCa")
    p.add_argument("--fit", type=Path, required=True,
                   help=f"folder holding the encoder ({ENCODER_DIR}/); fitted there if missing (needs --data)")
    p.add_argument("--method", required=True, choices=["scuba", "lavca"])
    p.add_argument("--bank", type=Path, required=True, help="bank folder written by `braincode bank` (natural "
                   "images the subject never saw)")
    p.add_argument("--roi", action="append",
                   help="ROI (FFA-1, FFA, floc-faces:FFA-1) or ROI family (floc-faces), repeatable; default: voxels")
    p.add_argument("--out", type=Path, required=True, help="CSV to write (components go to the .json beside it)")
    p.add_argument("--data", type=Path, help="dataset root (Algonauts layout), to fit the encoder or --evaluate")
    p.add_argument("--subject")
    p.add_argument("--encoder", default="published", choices=["published", "adamw", "ridge"],
                   help="how to fit a missing encoder (published: AdamW on augmented images, as the paper)")
    p.add_argument("--holdout", type=float, default=0.1,
                   help="fraction of the training images the encoder never sees (scored by --evaluate)")
    p.add_argument("--top-voxels", type=int, help="only the N best-predicted voxels on held-out images (papers: 5000)")
    p.add_argument("--evaluate", action="store_true",
                   help="LaVCa sentence metric (Spearman) on held-out images, beside a shuffled-caption control")
    p.add_argument("--score-model", type=Path,
                   help="sentence-transformers folder that scores (default: MiniLM), or 'tfidf' (word TF-IDF)")
    p.add_argument("--allow-same-scorer", action="store_true",
                   help="let the captions' own text model score them (optimistic)")
    p.add_argument("--allow-training-eval", action="store_true",
                   help="score on the encoder's training images when none are held out (labelled circular)")
    p.add_argument("--decoder", type=Path,
                   help="scuba: ClipCap checkpoint (.pt, with --gpt2) or a train-decoder folder")
    p.add_argument("--gpt2", type=Path, help="scuba: GPT-2 folder (config and tokenizer) of a ClipCap checkpoint")
    p.add_argument("--retrieval", action="store_true", help="scuba: nearest bank caption instead of ClipCap (baseline)")
    p.add_argument("--temperature", type=float, default=150.0, help="scuba: softmax temperature")
    p.add_argument("--n-top", type=int, default=50, help="lavca: top bank images per voxel")
    p.add_argument("--n-keywords", type=int, default=5, help="lavca: keywords per sentence (paper: 5)")
    p.add_argument("--captioner", type=Path, help="lavca: local image-to-text model folder")
    p.add_argument("--lm", type=Path, help="lavca: local causal LM folder for keywords and the sentence")
    p.add_argument("--simplified", action="store_true",
                   help="lavca: bank captions, noun-phrase keywords and a template instead of the models")
    p.add_argument("--cache", type=Path, help="feature cache folder")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.set_defaults(func=run)
