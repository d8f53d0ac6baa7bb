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
from braincode.features.design import FeatureSpec, extract_spaces, stack_spaces

stimuli = {split: ds[split].stimuli for split in ("train", "test")}
store = FeatureStore(workdir / "cache")
vision = extract_spaces(stimuli, FeatureSpec("open_clip:tiny-vit@random", ("blocks.1", "pooled")), store=store)
text = extract_spaces(stimuli, FeatureSpec("minilm"), store=store, text=True)
# named feature spaces: two layers of the ViT and the captions' sentence embeddings
spaces = {split: {**vision[split], "text": text[split]["pooled"]} for split in stimuli}
print({name: x.shape for name, x in spaces["train"].items()})

# %% [markdown]
# ## Ridge with a per-voxel alpha, scored by cross-validation and against the truth
#
# The analysis API takes an estimator first, as scikit-learn's `cross_validate` does: here the default encoder
# (standardised features, then ridge with one alpha per voxel). `result.methods` says how each score was obtained.

# %%
from braincode.data.rois import roi_table
from braincode.encoding import cross_validate_voxels, make_encoder
from braincode.encoding.metrics import pearson_r

X_train, columns = stack_spaces(spaces["train"])
X_test, _ = stack_spaces(spaces["test"])
result = cross_validate_voxels(make_encoder(), X_train, ds["train"].responses.data, ds.voxels, X_test=X_test)
print(result.methods["r"])
truth = load_truth(root, "subj01")
scores = result.scores.assign(r_truth=pearson_r(truth.test_clean, result.test_predictions))
table = roi_table(scores, ["r", "r_truth"])
table

# %%
assert table.loc[table.roi == "all", "r_truth"].item() > 0.1, "the encoder should predict the truth"

# %% [markdown]
# ## Which feature space explains which voxels: banded ridge and variance partitioning
#
# A banded ridge gives each feature space its own regularisation; with `spaces`, each space's unique R^2
# (what the model loses without it) and the shared R^2 are added per voxel. On this synthetic subject the
# category voxels are driven by what the image shows, which the captions name: the text space should carry them.

# %%
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from braincode.encoding import BandedRidgeEncoder

banded = make_pipeline(StandardScaler(), BandedRidgeEncoder(n_iter=10, random_state=0))
parts = cross_validate_voxels(banded, X_train, ds["train"].responses.data, ds.voxels, spaces=columns, cv=3)
roi_table(parts.scores, ["r2", "unique_r2_blocks.1", "unique_r2_pooled", "unique_r2_text", "shared_r2"])

# %% [markdown]
# ## The subject's report: scores per ROI and on the cortical surface

# %%
from IPython.display import HTML

from braincode.report.subject import subject_report_html

html = subject_report_html(scores, title="quickstart", subject="subj01")
HTML(html[:200] + "...")
