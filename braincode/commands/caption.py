"""``braincode bank`` and ``braincode caption``: voxel and ROI captions by BrainSCUBA or LaVCa.

::

    braincode bank --images DIR --model open_clip:ViT-B-32@openai --out BANK
    braincode caption --fit OUT --method scuba --bank BANK --roi floc-faces --out captions.csv \\
        [--data ROOT --subject subj01]   # fits the encoder into OUT when OUT has none; with --evaluate, scores

The encoder (``OUT/scuba_encoder.safetensors``) is BrainSCUBA's linear map on normalised embeddings of the bank's model.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from braincode.errors import ConfigError

if TYPE_CHECKING:  # imported where used, so that `braincode --help` stays fast
    import numpy as np
    import pandas as pd

log = logging.getLogger(__name__)


def _units(voxels: pd.DataFrame, names: list[str]) -> list[tuple[str, str, np.ndarray]]:
    """(family, roi, voxel mask) for each ROI selected (:func:`braincode.data.rois.select_rois`' grammar)."""
    from braincode.data.rois import select_rois

    return select_rois(voxels, names)


def _encoder(args: argparse.Namespace, bank):
    """The encoder in ``--fit``, fitted there first from ``--data``/``--subject`` when missing."""
    from braincode.interpret.scuba import WEIGHTS, fit_encoder, load_encoder

    if (args.fit / WEIGHTS).is_file():
        encoder = load_encoder(args.fit)
        if bank.model_id and encoder.model_id and encoder.model_id != bank.model_id:
            raise ConfigError("the encoder and the bank use different models", path=args.fit,
                              expected=f"an encoder fitted on {bank.model_id} embeddings",
                              found=encoder.model_id, fix="fit the encoder again with this bank (new --fit folder)")
        return encoder
    if args.data is None or args.subject is None:
        raise ConfigError("no encoder in the --fit folder", path=args.fit, expected="scuba_encoder.safetensors",
                          fix="pass --data ROOT --subject S to fit one into that folder")
    from braincode.data import load_algonauts
    from braincode.features import FeatureStore

    train = load_algonauts(args.data, args.subject)["train"]
    store = FeatureStore(args.cache) if args.cache else None
    x = bank.embed(train.stimuli, store=store, device=args.device)
    encoder = fit_encoder(x, train.responses.data, train.responses.voxels, method=args.encoder,
                          model_id=bank.model_id, device=args.device)
    encoder.save(args.fit)
    log.info("fitted the %s encoder on %d images into %s", args.encoder, len(x), args.fit)
    return encoder


def _scuba(args: argparse.Namespace, bank, weights: np.ndarray, units) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    from braincode.interpret.clipcap import PrefixDecoder
    from braincode.interpret.decoders import RetrievalDecoder
    from braincode.interpret.scuba import caption_voxels, project

    if args.decoder is not None:
        decoder = PrefixDecoder.load(args.decoder, device=args.device)
    else:
        # keys: the captions' text embeddings (CLIP text tower) for an image bank that has one; the bank's own
        # embeddings otherwise (a caption bank's embeddings are those of its captions)
        decoder = RetrievalDecoder.from_bank(bank, encode_text=bank.text_encoder() if bank.source == "images" else None)
    if units is None:
        proj = project(weights, bank, temperature=args.temperature, device=args.device)
        return pd.DataFrame({"caption": caption_voxels(proj, decoder)})
    needed = np.any([m for _, _, m in units], axis=0)
    proj = np.zeros_like(weights)
    proj[needed] = project(weights[needed], bank, temperature=args.temperature, device=args.device)
    return pd.DataFrame({"caption": decoder.decode(np.stack([proj[m].mean(0) for _, _, m in units]))})


def _lavca(args: argparse.Namespace, bank, weights: np.ndarray, units) -> pd.DataFrame:
    import numpy as np

    from braincode.interpret import lavca

    if units is not None:
        weights = np.stack([weights[m].mean(0) for _, _, m in units])
    lm = lavca.LocalLM(args.lm, device=args.device) if args.lm else None
    return lavca.describe(
        weights, bank, encode_text=bank.text_encoder(), n_top=args.n_top,
        n_keywords=args.n_keywords,
        captioner=lavca.HFImageCaptioner(args.captioner, device=args.device) if args.captioner else None,
        extractor=lavca.LMKeywords(lm) if lm else None, composer=lavca.LMComposer(lm) if lm else None,
        device=args.device,
    )


def _evaluate(args: argparse.Namespace, table: pd.DataFrame, units, n_voxels: int) -> pd.DataFrame:
    import numpy as np

    from braincode.data import load_algonauts
    from braincode.interpret.text_eval import evaluate_captions

    if args.data is None or args.subject is None:
        raise ConfigError("--evaluate needs the measured responses", fix="pass --data ROOT --subject S")
    train = load_algonauts(args.data, args.subject)["train"]
    if train.stimuli.captions is None:
        raise ConfigError("--evaluate needs a caption per training image", path=args.data,
                          expected="captions.csv in the subject folder (columns image, caption)")
    y = train.responses.data
    if y.shape[1] != n_voxels:
        raise ConfigError("the dataset and the encoder have different voxels", expected=f"{n_voxels} voxels",
                          found=str(y.shape[1]), fix="use the --data/--subject the encoder was fitted on")
    if units is not None:
        y = np.stack([y[:, m].mean(1) for _, _, m in units], axis=1)
    scores = evaluate_captions(table["caption"], train.stimuli.captions, y, random_state=0)
    return table.assign(spearman=scores["spearman"].to_numpy(), spearman_shuffled=scores["spearman_shuffled"])


def _cmd_caption(args: argparse.Namespace) -> int:
    import pandas as pd

    from braincode.atomic import atomic_write
    from braincode.interpret.bank import load_bank
    from braincode.interpret.text_eval import vocabulary_size

    bank = load_bank(args.bank)
    encoder = _encoder(args, bank)
    units = _units(encoder.voxels, args.roi) if args.roi else None
    method = _scuba if args.method == "scuba" else _lavca
    captions = method(args, bank, encoder.coef, units)
    if units is None:
        table = pd.concat([encoder.voxels.reset_index(drop=True), captions], axis=1)
    else:
        table = pd.concat([pd.DataFrame({"family": [u[0] for u in units], "roi": [u[1] for u in units],
                                         "voxels": [int(u[2].sum()) for u in units]}), captions], axis=1)
    if args.evaluate:
        table = _evaluate(args, table, units, encoder.coef.shape[0])
    atomic_write(args.out, lambda p: table.to_csv(p, index=False))
    print(f"wrote {len(table)} {args.method} captions to {args.out} "
          f"(vocabulary: {vocabulary_size(table['caption'])} words)")
    if units is not None:
        columns = [c for c in ("roi", "caption", "spearman", "spearman_shuffled") if c in table]
        with pd.option_context("display.width", 160, "display.max_colwidth", 90, "display.float_format",
                               "{:.3f}".format):
            print(table[columns].to_string(index=False))
    return 0


def _cmd_bank(args: argparse.Namespace) -> int:
    from braincode.features import FeatureStore
    from braincode.interpret.bank import build_bank

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
                   help="folder holding the encoder (scuba_encoder.*); fitted there if missing (needs --data)")
    p.add_argument("--method", required=True, choices=["scuba", "lavca"])
    p.add_argument("--bank", type=Path, required=True, help="bank folder written by `braincode bank`")
    p.add_argument("--roi", action="append",
                   help="ROI (e.g. FFA-1) or ROI family (e.g. floc-faces), repeatable; default: every voxel")
    p.add_argument("--out", type=Path, required=True, help="CSV to write")
    p.add_argument("--data", type=Path, help="dataset root (Algonauts layout), to fit the encoder or --evaluate")
    p.add_argument("--subject")
    p.add_argument("--encoder", default="ridge", choices=["ridge", "adamw"], help="how to fit a missing encoder")
    p.add_argument("--evaluate", action="store_true",
                   help="add the LaVCa sentence metric (Spearman) and its shuffled-caption control")
    p.add_argument("--decoder", type=Path, help="scuba: prefix-decoder folder (default: bank-caption retrieval)")
    p.add_argument("--temperature", type=float, default=150.0, help="scuba: softmax temperature")
    p.add_argument("--n-top", type=int, default=50, help="lavca: top bank images per voxel")
    p.add_argument("--n-keywords", type=int, default=3, help="lavca: keywords per sentence")
    p.add_argument("--captioner", type=Path, help="lavca: local image-to-text model (default: the bank's captions)")
    p.add_argument("--lm", type=Path, help="lavca: local causal LM for keywords and sentence (default: rules)")
    p.add_argument("--cache", type=Path, help="feature cache folder")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.set_defaults(func=_cmd_caption)
