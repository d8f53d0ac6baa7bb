"""Caption evaluation table on the synthetic subject: BrainSCUBA (retrieval baseline; ClipCap, tiny random and tiny
trained) and LaVCa (published components with tiny random local models; simplified mode), scored on held-out
images only, each score beside its shuffled-caption control.

    BRAINCODE_PROGRESS=0 HF_HUB_OFFLINE=1 .venv/bin/python bench/scuba.py --table [--n-train 300] [--n-bank 300]

Set-up. Subject ``make_synthetic(seed=0)``; bank: captioned images of another synthetic draw (seed 1), none of the
subject's. No pretrained CLIP is available offline, so the joint space is MiniLM on the bank's captions (the
encoder reads MiniLM embeddings of the subject's captions); the encoder is the published AdamW recipe on those
fixed embeddings (no image augmentation), with 20% of the training images held out. Captions are made per voxel
for the voxels of the category ROIs; an ROI's caption is its most frequent voxel caption. Scores (LaVCa metric,
Spearman of caption-stimulus similarity with the held-out responses): ``minilm`` (the space that chose the
retrieval/LaVCa keywords: optimistic) and ``tfidf`` (word TF-IDF, independent). ``voxel`` rows average over the
ROI voxels; ``roi`` rows score each ROI's caption against its mean response. ``beats`` is the share of units whose
score beats the shuffled control. Prints a markdown table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

FAMILIES = ("floc-faces", "floc-bodies", "floc-places", "floc-words")


def _bank_images(root: Path, n: int, size: int) -> Path:
    from braincode.data.synthetic import make_synthetic

    make_synthetic(root / "src", n_train=n, n_test=1, image_size=size, seed=1)
    images = root / "bank_images"
    images.mkdir()
    table = pd.read_csv(root / "src" / "subj01" / "captions.csv")
    table = table[table["image"].str.startswith("train")]
    for name in table["image"]:
        shutil.copy(root / "src" / "subj01" / "training_split" / "training_images" / name, images / f"b{name}")
    table.assign(image="b" + table["image"]).to_csv(images / "captions.csv", index=False)
    return images


def _tiny_local_models(root: Path, words: list[str]) -> tuple[Path, Path]:
    """A random tiny VisionEncoderDecoder captioner and a random tiny GPT-2, saved as local folders."""
    from transformers import (
        GPT2Config,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessor,
    )

    from braincode.interpret.clipcap import PrefixDecoder

    lm = PrefixDecoder.tiny(4, [" ".join(words)], n_layer=1, n_embd=32, random_state=0)
    lm.lm.save_pretrained(root / "lm")
    lm.tokenizer.save_pretrained(root / "lm")
    tok = lm.tokenizer
    decoder = GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=1, n_head=2, add_cross_attention=True,
                         is_decoder=True, bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    encoder = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64)
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id, config.pad_token_id = tok.eos_token_id, tok.pad_token_id
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        VisionEncoderDecoderModel(config=config).save_pretrained(root / "captioner")
    tok.save_pretrained(root / "captioner")
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(root / "captioner")
    return root / "captioner", root / "lm"


def _score(rows: list, method: str, captions: np.ndarray, rois, held, index: np.ndarray, scorers: dict) -> None:
    from braincode.interpret.evaluation import score_captions
    from braincode.interpret.scuba import roi_summaries

    summary = roi_summaries(captions.tolist(), rois)
    for scorer, model in scorers.items():
        voxel = score_captions(captions[index], held, voxel_index=index, model=model)
        roi = score_captions(summary["caption"], held, rois=rois, model=model)
        for level, t in (("voxel", voxel), ("roi", roi)):
            rows.append({"method": method, "scorer": scorer, "level": level, "units": len(t),
                         "spearman": round(float(t["spearman"].mean()), 3),
                         "shuffled": round(float(t["spearman_shuffled"].mean()), 3),
                         "beats": round(float(t["beats_shuffled"].mean()), 2), "split": held.split,
                         "n_stimuli": len(held.ids)})
    rows[-1]["example"] = "; ".join(f"{r}: {c}" for r, c in zip(summary["roi"], summary["caption"]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=300)
    parser.add_argument("--n-bank", type=int, default=300)
    parser.add_argument("--image-size", type=int, default=64)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from braincode.data import load_algonauts
    from braincode.data.rois import select_rois
    from braincode.data.synthetic import make_synthetic
    from braincode.interpret import lavca
    from braincode.interpret.bank import subject_overlap
    from braincode.interpret.bank_build import build_bank
    from braincode.interpret.clipcap import PrefixDecoder
    from braincode.interpret.decoders import RetrievalDecoder
    from braincode.interpret.evaluation import heldout_stimuli, scorer_model
    from braincode.interpret.scuba import caption_voxels, project
    from braincode.interpret.scuba_encoder import fit_encoder

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_synthetic(root / "data", n_train=args.n_train, n_test=5, image_size=args.image_size, seed=0)
        train = load_algonauts(root / "data", "subj01")["train"]
        bank = build_bank(_bank_images(root, args.n_bank, args.image_size), "minilm", root / "bank",
                          from_captions=True, device="cpu", progress=False)
        overlap = len(subject_overlap(bank, train.stimuli))
        x = bank.embed(train.stimuli, device="cpu", progress=False)
        encoder = fit_encoder(x, train.responses.data, train.responses.voxels, method="adamw", model_id="minilm",
                              ids=train.stimuli.ids, holdout=0.2, device="cpu")
        held = heldout_stimuli(train, encoder)
        rois = select_rois(encoder.voxels, list(FAMILIES))
        index = np.flatnonzero(np.any([r.mask for r in rois], axis=0))
        scorers = {"minilm": scorer_model(), "tfidf": scorer_model("tfidf", held.captions)}
        rows: list[dict] = []

        def run(method: str, make) -> None:
            t0 = time.perf_counter()
            captions = np.full(len(encoder.voxels), "", dtype=object)
            captions[index] = make()
            _score(rows, method, captions, rois, held, index, scorers)
            for row in rows[-4:]:
                row["seconds"] = round(time.perf_counter() - t0, 1)

        proj, weights = project(encoder.coef[index], bank, device="cpu"), encoder.coef[index]
        run("scuba retrieval (baseline)", lambda: caption_voxels(proj, RetrievalDecoder.from_bank(bank)))
        captions = [c for c in bank.captions if c]
        random_clipcap = PrefixDecoder.tiny(bank.dim, captions, prefix_length=4, n_embd=32, random_state=0)
        run("scuba ClipCap (tiny, random)", lambda: caption_voxels(proj, random_clipcap))
        trained = PrefixDecoder.tiny(bank.dim, captions, prefix_length=4, n_embd=32, random_state=0)
        trained.fit(bank.embeddings(), captions, epochs=20, lr=3e-3, batch_size=32, device="cpu", progress_bar=False)
        run("scuba ClipCap (tiny, trained on the bank)", lambda: caption_voxels(proj, trained))
        run("lavca simplified", lambda: lavca.describe(weights, bank, n_top=20, device="cpu")["caption"].tolist())
        words = sorted({w for c in captions for w in c.lower().replace(",", " ").split()})
        captioner, lm = _tiny_local_models(root, words)
        parts = lavca.components(bank, captioner=captioner, lm=lm, device="cpu")
        run("lavca published components (tiny random models)",
            lambda: lavca.describe(weights, bank, parts=parts, n_top=20, device="cpu")["caption"].tolist())
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_colwidth", 200):
        body = table.drop(columns=["example"]).astype(str)
        print("\n".join("| " + " | ".join(r) + " |" for r in [list(body.columns), ["---"] * body.shape[1],
                                                              *body.values.tolist()]))
        for method, example in table.dropna(subset=["example"])[["method", "example"]].values:
            print(f"- {method}: {example}")
    print(json.dumps({"bench": "scuba.table", "n_train": args.n_train, "n_heldout": len(held.ids),
                      "n_bank": len(bank), "subject_stimuli_in_bank": overlap, "seconds": round(
                          time.perf_counter() - start, 1), "rows": table.drop(columns=["example"]).to_dict("records")}))


if __name__ == "__main__":
    main()
