# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # What does an ROI prefer? Captions (BrainSCUBA, LaVCa) and images (BrainDiVE), evaluated honestly
#
# On the synthetic subject the face ROIs respond to faces, PPA/OPA to houses, EBA to people, VWFA to words.
#
# | method | component | published (default) | also available |
# |---|---|---|---|
# | BrainSCUBA | encoder | linear on L2-normalised CLIP image embeddings, AdamW 3e-4 / wd 1.5e-2 / batch 32 / 100 epochs, lr decayed to 0.5x, +-4 px shift and noise (`fit_encoder_on_images`) | same optimiser on fixed embeddings (`method="adamw"`), ridge |
# | | projection | softmax(150 cos) over a bank of natural images the subject never saw (`project`) | |
# | | decoder | ClipCap, per voxel, beam 5, 67 tokens, stop at "." (`PrefixDecoder.from_clipcap`) | nearest bank caption (`RetrievalDecoder`, a baseline) |
# | | ROI summary | from the voxels' captions (`roi_summaries`) | |
# | LaVCa | captions of the top images | local image-to-text model (`HFImageCaptioner`) | the bank's stored captions (simplified) |
# | | keywords | local causal LM + prompt (`LMKeywords`) | noun-phrase heuristic (simplified) |
# | | filter | CLIP-text cosine, softmax threshold, 5 keywords | cosine ranking only (simplified) |
# | | sentence | LM candidates, the one nearest the voxel weight (`WeightGuidedComposer`) | template (simplified) |
# | BrainDiVE | guidance | brain gradient (scale 130) + self-attention guidance 0.75 at every step | `sag_scale=0` |
# | | encoder | linear on L2-normalised CLIP, bilinear resize to 224 + CLIP normalisation (`ClipLinearGuide`) | `braincode fit`'s encoder |
# | | ROI | ROI voxels with localizer t > 2 when a t-map is given | the whole ROI |
#
# Offline, no pretrained CLIP or ClipCap exists here, so the captions below use MiniLM embeddings of captions as
# the joint space and the retrieval baseline; BrainDiVE runs a tiny random CLIP and diffusion model, so its images
# only show the mechanics. Every score is measured on images the encoder never saw, beside a shuffled control.

# %%
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("HF_HUB_OFFLINE", "1")
N_TRAIN = int(os.environ.get("BRAINCODE_NOTEBOOK_N_TRAIN", "240"))
workdir = Path(tempfile.mkdtemp(prefix="braincode-captions-"))

# %%
from braincode.data import load_algonauts
from braincode.data.synthetic import make_synthetic
from braincode.interpret.bank import warn_subject_overlap
from braincode.interpret.bank_build import build_bank

root = make_synthetic(workdir / "data", "subj01", n_train=N_TRAIN, n_test=20, seed=0)
train = load_algonauts(root, "subj01")["train"]
# the bank: captioned images of another draw, none of the subject's own stimuli
other = make_synthetic(workdir / "other", "subj01", n_train=200, n_test=1, seed=1)
images = workdir / "bank_images"
shutil.copytree(other / "subj01" / "training_split" / "training_images", images)
pd.read_csv(other / "subj01" / "captions.csv").to_csv(images / "captions.csv", index=False)
bank = build_bank(images, "minilm", workdir / "bank", from_captions=True, progress=False)
warn_subject_overlap(bank, train.stimuli)

# %% [markdown]
# ## BrainSCUBA: encoder (20% of the images held out) -> projection of every voxel -> a caption per voxel

# %%
from braincode.data.rois import select_rois
from braincode.interpret.decoders import RetrievalDecoder
from braincode.interpret.scuba import caption_voxels, project, roi_summaries
from braincode.interpret.scuba_encoder import fit_encoder

x = bank.embed(train.stimuli, progress=False)
encoder = fit_encoder(x, train.responses.data, train.responses.voxels, method="adamw", model_id="minilm",
                      ids=train.stimuli.ids, holdout=0.2)
rois = select_rois(encoder.voxels, ["floc-faces", "floc-places", "floc-bodies", "floc-words"])
voxel_captions = caption_voxels(project(encoder.coef, bank), RetrievalDecoder.from_bank(bank))
scuba = roi_summaries(voxel_captions, rois)
scuba

# %%
assert scuba.loc[scuba["roi"] == "FFA-1", "caption"].str.contains("face").all()

# %% [markdown]
# ## Honest evaluation: held-out images only, shuffled control beside every score
#
# Scored with word TF-IDF, not the MiniLM space that chose the captions.

# %%
from braincode.interpret.evaluation import heldout_stimuli
from braincode.interpret.text_eval import TfidfSentences, evaluate_captions

held = heldout_stimuli(train, encoder)
y = np.stack([held.responses[:, r.mask].mean(1) for r in rois], axis=1)
scores = evaluate_captions(scuba["caption"], held.captions, y, split=held.split, model=TfidfSentences(held.captions))
scores.assign(roi=scuba["roi"])[["roi", "caption", "spearman", "spearman_shuffled", "beats_shuffled", "split"]]

# %% [markdown]
# ## LaVCa, simplified mode (bank captions, noun-phrase keywords, template); the output says so

# %%
from braincode.interpret.lavca import describe

face_voxels = np.flatnonzero(encoder.voxels["roi:floc-faces"].to_numpy() == "FFA-1")[:3]
lavca = describe(encoder.coef[face_voxels], bank, n_top=20)
print(lavca.attrs["components"])
lavca[["caption", "keywords", "mode"]]

# %% [markdown]
# ## BrainDiVE: brain guidance + self-attention guidance, linear CLIP encoder (tiny random models)

# %%
from braincode.interpret._dive_models import random_diffusion
from braincode.interpret.dive import BrainDiVEPipeline
from braincode.interpret.dive_encoder import ClipLinearGuide
from braincode.interpret.dive_objectives import roi_objective
from braincode.interpret.scuba_encoder import Recipe, fit_encoder_on_images

clip_encoder = fit_encoder_on_images(train.stimuli, train.responses.data, train.responses.voxels,
                                     "open_clip:tiny-vit@random", holdout=0.2, recipe=Recipe(epochs=3))
guide = ClipLinearGuide.from_encoder(clip_encoder, device="cpu")
parts = random_diffusion("tiny")
pipe = BrainDiVEPipeline(parts.unet, parts.vae, parts.scheduler, guide)
objective = roi_objective(guide.voxels, "FFA-1")
guided = pipe(objective, seeds=[0, 1], num_inference_steps=5, guidance_scale=130.0, sag_scale=0.75, progress=False)
plain = pipe(objective, seeds=[0, 1], num_inference_steps=5, guidance_scale=0.0, sag_scale=0.75, progress=False)
pd.DataFrame({"seed": [0, 1], "guided": guided.scores, "unguided": plain.scores})

# %%
assert np.all(np.asarray(guided.scores) > np.asarray(plain.scores))
guided.images[0].resize((128, 128))
