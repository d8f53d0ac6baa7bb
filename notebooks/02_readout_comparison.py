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
# # Readouts compared: ridge, factorized spatial x feature, attention routing
#
# The synthetic subject has two kinds of voxels whose truth we know: early-visual voxels with a fixed receptive
# field (pRF), and category voxels that respond to a face, body, place or word *anywhere* in the image. A ridge
# on pooled tokens must learn the category at every position separately; a factorized readout learns one spatial
# map per voxel; the attention-routing readout (Adeli et al. 2025, the published architecture) lets one learned
# query per ROI look for its category wherever it is, and a vertex in several ROIs sums their readouts. The decoder
# here is as wide as these tokens (128) rather than the paper's 768 so that CI runs this notebook in a minute or
# two; `bench/readouts.py` runs the full comparison over several seeds. Every score below is a *test* r against
# the noiseless truth; the readouts' own `validation_r_` is the early-stopping split's.

# %%
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.manual_seed(0)
N_TRAIN = int(os.environ.get("BRAINCODE_NOTEBOOK_N_TRAIN", "240"))
workdir = Path(tempfile.mkdtemp(prefix="braincode-readouts-"))

# %%
from braincode.data import load_algonauts
from braincode.data.synthetic import load_truth, make_synthetic
from braincode.features import FeatureStore, get_extractor, pool_tokens

root = make_synthetic(workdir / "data", "subj01", n_train=N_TRAIN, n_test=60, seed=0)
ds, truth = load_algonauts(root, "subj01"), load_truth(root, "subj01")
extractor = get_extractor("open_clip:tiny-vit@random", layers=["blocks.2"])
tokens = {s: extractor.extract(ds[s].stimuli, store=FeatureStore(workdir / "cache"))["blocks.2"] for s in ("train", "test")}
Y = ds["train"].responses.data
tokens["train"].shape, extractor.grid

# %% [markdown]
# ## Three readouts on the same tokens

# %%
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from braincode.encoding import FactorizedReadout, RidgeEncoder, RoutingReadout
from braincode.encoding.metrics import pearson_r

prefix = extractor.num_prefix_tokens
pooled = {s: pool_tokens(t, num_prefix_tokens=prefix, grid=extractor.grid, mode="grid", out_grid=4) for s, t in tokens.items()}
families = ["prf-visualrois", "floc-bodies", "floc-faces", "floc-places", "floc-words"]
models = {
    "ridge": make_pipeline(StandardScaler(), RidgeEncoder(cv=5)).fit(pooled["train"], Y),
    "factorized": FactorizedReadout(num_prefix_tokens=prefix, random_state=0).fit(tokens["train"], Y),
    "routing": RoutingReadout(families=families, d_model=tokens["train"].shape[2], n_heads=8, d_ff=256, lr=1e-3,
                              num_prefix_tokens=prefix, random_state=0).fit(tokens["train"], Y, ds.voxels),
}
{name: m.fit_info_ for name, m in models.items() if name != "ridge"}
kind = truth.voxels["kind"].to_numpy()
rows = []
for name, model in models.items():
    pred = model.predict(pooled["test"] if name == "ridge" else tokens["test"])
    r = pearson_r(truth.test_clean, pred)
    rows.append({"readout": name, "pRF voxels (test r)": r[kind == "prf"].mean(),
                 "category voxels (test r)": r[kind == "category"].mean()})
table = pd.DataFrame(rows).set_index("readout")
table

# %%
assert table.loc["routing", "category voxels (test r)"] > table.loc["ridge", "category voxels (test r)"]

# %% [markdown]
# ## Where do the face queries look?

# %%
from braincode.encoding.routing_maps import routing_maps, save_overlays

faces = [q for q in models["routing"].query_labels_ if "FFA" in q or "OFA" in q]
maps = routing_maps(models["routing"], tokens["test"][:6], faces)
save_overlays(maps, ds["test"].stimuli.subset(np.arange(6)), workdir / "face_maps.png", queries=faces[:2])
from IPython.display import Image

Image(filename=str(workdir / "face_maps.png"))
