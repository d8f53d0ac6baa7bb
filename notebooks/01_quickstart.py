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
# # braincode quickstart: a synthetic subject end to end
#
# A synthetic dataset in the Algonauts 2023 layout with a known ground truth: early-visual voxels driven by
# contrast inside a population receptive field, category voxels driven by faces, bodies, places or words
# anywhere in the image. We extract features of a tiny random-weight ViT (a real open_clip architecture) and of
# the MiniLM sentence model on the captions, fit a per-voxel ridge encoder, and compare its test predictions with
# the noiseless truth. `N_TRAIN` is small so that the notebook runs in CI; raise it for clearer results.

# %%
import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
N_TRAIN = int(os.environ.get("BRAINCODE_NOTEBOOK_N_TRAIN", "200"))
workdir = Path(tempfile.mkdtemp(prefix="braincode-quickstart-"))

# %%
from braincode.data import load_algonauts
from braincode.data.synthetic import load_truth, make_synthetic

root = make_synthetic(workdir / "data", "subj01", n_train=N_TRAIN, n_test=40, seed=0)
ds = load_algonauts(root, "subj01")
print(ds["train"].responses.shape, ds.roi_families)
ds["train"].stimuli.image(0)

# %% [markdown]
# ## Features: one pass, several layers, cached on disk

# %%
from braincode.features import FeatureStore
from braincode.features.design import FeatureSpec, extract_design

stimuli = {split: ds[split].stimuli for split in ("train", "test")}
store = FeatureStore(workdir / "cache")
vision = extract_design(stimuli, FeatureSpec("open_clip:tiny-vit@random", ("blocks.1", "pooled")), store=store)
text = extract_design(stimuli, FeatureSpec("minilm"), store=store, text=True)
print({k: v.shape for k, v in vision.items()}, {k: v.shape for k, v in text.items()})

# %% [markdown]
# ## Ridge with a per-voxel alpha, scored by cross-validation and against the truth

# %%
import numpy as np

from braincode.encoding.metrics import pearson_r
from braincode.pipeline.steps import fit_and_score, roi_table

X = {split: np.concatenate([vision[split], text[split]], axis=1) for split in stimuli}
result = fit_and_score(X["train"], ds["train"].responses.data, X["test"], ds.voxels)
truth = load_truth(root, "subj01")
scores = result.scores.assign(r_truth=pearson_r(truth.test_clean, result.test_predictions))
table = roi_table(scores, ["r", "r_truth"])
table

# %%
assert table.loc[table.roi == "all", "r_truth"].item() > 0.1, "the encoder should predict the truth"

# %% [markdown]
# ## The subject's report: scores per ROI and on the cortical surface

# %%
from IPython.display import HTML

from braincode.report.subject import subject_report_html

html = subject_report_html(scores, title="quickstart", subject="subj01")
HTML(html[:200] + "...")
