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
# # What does an ROI prefer? Captions (BrainSCUBA, LaVCa) and images (BrainDiVE)
#
# On the synthetic subject the face ROIs respond to faces, PPA/OPA to houses, EBA to people, VWFA to words.
# BrainSCUBA projects each voxel's encoder weights onto a bank of stimulus embeddings and decodes the result into
# a caption; LaVCa describes the top bank images' captions in keywords; BrainDiVE steers a diffusion model with
# the encoder's gradient. Offline we use the MiniLM sentence model on the bank's captions as embedding space and a
# tiny random-weight diffusion model, so the images only show the mechanics; the captions are meaningful.

# %%
import os
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
from braincode.features import FeatureSpec, FeatureStore, extract_design

root = make_synthetic(workdir / "data", "subj01", n_train=N_TRAIN, n_test=20, seed=0)
ds = load_algonauts(root, "subj01")
train = ds["train"]
store = FeatureStore(workdir / "cache")
emb = extract_design({"train": train.stimuli}, FeatureSpec("minilm"), store=store, text=True)["train"]

# %% [markdown]
# ## BrainSCUBA: voxel weights -> softmax projection onto the bank -> nearest caption

# %%
from braincode.interpret.bank import bank_from_arrays
from braincode.interpret.decoders import RetrievalDecoder
from braincode.interpret.scuba import caption_rois, fit_encoder, project

bank = bank_from_arrays(train.stimuli.ids, emb, captions=train.stimuli.captions, model_id="minilm", source="captions")
encoder = fit_encoder(emb, train.responses.data, ds.voxels, model_id="minilm")
projections = project(encoder.coef, bank, temperature=150.0)
decoder = RetrievalDecoder.from_bank(bank)
scuba = pd.concat([caption_rois(projections, ds.voxels, f, decoder) for f in ("floc-faces", "floc-places", "floc-bodies", "floc-words")])
scuba

# %%
assert scuba.loc[scuba["roi"] == "FFA-1", "caption"].str.contains("face").all()

# %% [markdown]
# ## LaVCa: top images -> their captions -> keywords -> one sentence

# %%
from braincode.interpret.lavca import describe

face_voxels = np.flatnonzero(ds.voxels["roi:floc-faces"].to_numpy() == "FFA-1")[:3]
describe(encoder.coef[face_voxels], bank, encode_text=None, n_top=20, n_keywords=3)

# %% [markdown]
# ## BrainDiVE: diffusion guided towards FFA-1 (tiny random diffusion model)

# %%
from braincode.encoding.analysis import make_encoder
from braincode.encoding.torch_encoder import TorchEncoder
from braincode.interpret._dive_models import random_diffusion
from braincode.interpret.dive import BrainDiVEPipeline, roi_objective

spec = FeatureSpec("open_clip:tiny-vit@random", ("pooled",))
X = extract_design({"train": train.stimuli}, spec, store=store)["train"]
image_encoder = TorchEncoder.from_estimator(spec, make_encoder().fit(X, train.responses.data), voxels=ds.voxels)
parts = random_diffusion("tiny")
pipe = BrainDiVEPipeline(parts.unet, parts.vae, parts.scheduler, image_encoder)
objective = roi_objective(ds.voxels, "FFA-1")
guided = pipe(objective, seeds=[0, 1], num_inference_steps=5, guidance_scale=130.0, progress=False)
plain = pipe(objective, seeds=[0, 1], num_inference_steps=5, guidance_scale=0.0, progress=False)
pd.DataFrame({"seed": [0, 1], "guided": guided.scores, "unguided": plain.scores})

# %%
assert np.all(np.asarray(guided.scores) > np.asarray(plain.scores))
guided.images[0].resize((128, 128))
