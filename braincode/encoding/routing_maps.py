"""Where each query of a fitted :class:`~braincode.encoding.readouts.RoutingReadout` looks: attention maps over
the patch grid, the share of attention inside a box, and PNG overlays on the stimulus images.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image

from braincode.atomic import atomic_write
from braincode.data.core import Stimuli
from braincode.encoding.readouts import RoutingReadout
from braincode.encoding.readouts_base import infer_grid
from braincode.errors import ConfigError, DataFormatError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoutingMaps:
    """Attention of some routing queries over the patch grid, per image.

    Attributes
    ----------
    maps : ndarray of shape (n_images, n_queries, gh, gw)
        Head-averaged attention probabilities; each ``maps[i, q]`` sums to 1.
    labels : list of str
        The query labels, e.g. ``"lh/FFA-1"`` (one query per ROI per hemisphere in the published model).
    """

    maps: np.ndarray
    labels: list[str]

    def of(self, label: str) -> np.ndarray:
        """Maps ``(n_images, gh, gw)`` of the query called ``label``."""
        if label not in self.labels:
            raise ConfigError("no such query", expected=f"one of {self.labels}", found=repr(label))
        return self.maps[:, self.labels.index(label)]


def routing_maps(
    readout: RoutingReadout,
    tokens: np.ndarray,
    queries: Sequence[str] | None = None,
    *,
    batch_size: int = 64,
) -> RoutingMaps:
    """Each chosen query's attention over the patch grid for each image's tokens (averaged over heads).

    Parameters
    ----------
    readout : RoutingReadout
        A fitted readout.
    tokens : ndarray of shape (n_images, n_tokens, n_features)
        Tokens of the same layer the readout was fitted on.
    queries : sequence of str, optional
        Query labels (:attr:`RoutingReadout.query_labels_`); default all of them.
    batch_size : int
        Images per forward pass.

    Returns
    -------
    RoutingMaps

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> X = np.random.default_rng(0).normal(size=(30, 16, 8)).astype(np.float32)
    >>> voxels = pd.DataFrame({"hemisphere": ["lh", "lh"], "roi:floc-faces": ["FFA-1", ""]})
    >>> ro = RoutingReadout(d_model=8, n_heads=2, d_ff=8, max_epochs=1, device="cpu")
    >>> ro = ro.fit(X, X[:, :2, 0], voxels)
    >>> rm = routing_maps(ro, X[:3])
    >>> rm.labels, rm.maps.shape, float(rm.maps[0, 1].sum().round(4))
    (['lh/FFA-1', 'lh/unknown'], (3, 2, 4, 4), 1.0)
    """
    readout._check_fitted()
    labels = readout.query_labels_
    queries = list(labels) if queries is None else list(queries)
    unknown = [q for q in queries if q not in labels]
    if unknown:
        raise ConfigError("unknown query labels", expected=f"labels among {labels[:30]}", found=str(unknown))
    n_tokens = tokens.shape[1] if readout.n_tokens_ is None else readout.n_tokens_
    if tokens.ndim != 3 or tuple(tokens.shape[1:]) != (n_tokens, readout.n_features_in_):
        raise DataFormatError("tokens differ from those the readout was fitted on",
                              expected=f"(n, {n_tokens}, {readout.n_features_in_})", found=str(tokens.shape))
    if readout.queries == "voxel" and queries is None:
        raise ConfigError("name the voxel queries to map", expected="queries=['voxel 0', ...]",
                          fix="pass a few labels from readout.query_labels_")
    module = readout.module_
    grid = infer_grid(tokens.shape[1] - readout.num_prefix_tokens, readout.extra_.get("grid"))
    device = next(module.parameters()).device
    index = torch.tensor([labels.index(q) for q in queries], device=device)
    out = []
    with torch.no_grad():
        for start in range(0, len(tokens), batch_size):
            x = torch.from_numpy(np.array(tokens[start:start + batch_size], dtype=np.float32)).to(device)
            out.append(module.attention_maps(x, index).float().cpu().numpy().reshape(len(x), len(index), *grid))
    return RoutingMaps(np.concatenate(out), queries)


def box_share(maps: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Share of each map's mass inside a box, each patch's mass spread evenly over its area.

    Parameters
    ----------
    maps : ndarray of shape (n, gh, gw)
        Non-negative maps over a grid covering the unit square.
    boxes : ndarray of shape (n, 4)
        ``(x0, y0, x1, y1)`` in fractions of the image width and height (origin top-left).

    Returns
    -------
    ndarray of shape (n,)
        Mass inside the box over total mass; compare with the box's area share (``(x1-x0)*(y1-y0)``).

    Examples
    --------
    >>> m = np.zeros((1, 2, 2)); m[0, 0, 0] = 1.0
    >>> box_share(m, np.array([[0.0, 0.0, 0.25, 0.5]])).tolist()
    [0.5]
    """
    maps, boxes = np.asarray(maps, dtype=np.float64), np.clip(np.asarray(boxes, dtype=np.float64), 0, 1)
    if maps.ndim != 3 or boxes.shape != (len(maps), 4):
        raise DataFormatError("box_share needs one box per map", expected="maps (n, gh, gw) and boxes (n, 4)",
                              found=f"{maps.shape} and {boxes.shape}")
    gh, gw = maps.shape[1:]

    def overlap(lo: np.ndarray, hi: np.ndarray, n: int) -> np.ndarray:  # (n_maps, n_cells) covered fraction
        edges = np.arange(n + 1) / n
        width = np.minimum(hi[:, None], edges[None, 1:]) - np.maximum(lo[:, None], edges[None, :-1])
        return np.clip(width, 0, None) * n

    inside = overlap(boxes[:, 1], boxes[:, 3], gh)[:, :, None] * overlap(boxes[:, 0], boxes[:, 2], gw)[:, None, :]
    return (maps * inside).sum((1, 2)) / maps.sum((1, 2))


def _images(images: Stimuli | Sequence[Image.Image], n: int) -> list[Image.Image]:
    if isinstance(images, Stimuli):
        return [images.image(i) for i in range(n)]
    return [img.convert("RGB") for img in list(images)[:n]]


def save_overlays(
    maps: RoutingMaps,
    images: Stimuli | Sequence[Image.Image],
    path: str | Path,
    *,
    queries: Sequence[str] | None = None,
    max_images: int = 8,
    boxes: np.ndarray | None = None,
) -> Path:
    """Render attention maps over their images as one PNG: a row per query, a column per image.

    Parameters
    ----------
    maps : RoutingMaps
        From :func:`routing_maps`, in the same image order as ``images``.
    images : Stimuli or sequence of PIL images
        The stimuli whose tokens gave ``maps``.
    path : str or Path
        PNG file to write (atomically).
    queries : sequence of str, optional
        Which queries to draw; default all of ``maps``.
    max_images : int
        Columns to draw (the first images).
    boxes : ndarray of shape (n_images, 4), optional
        ``(x0, y0, x1, y1)`` fractions to outline (e.g. the drawn object), NaN rows for none.

    Returns
    -------
    Path

    Examples
    --------
    >>> maps = routing_maps(readout, tokens, ["lh/FFA-1"])  # doctest: +SKIP
    >>> save_overlays(maps, stimuli, "ffa.png")  # doctest: +SKIP
    """
    queries = list(maps.labels) if queries is None else list(queries)
    n = min(max_images, len(maps.maps))
    pictures = _images(images, n)
    if len(pictures) < n:
        raise DataFormatError("fewer images than maps", expected=f"at least {n} images", found=str(len(pictures)))
    fig = Figure(figsize=(1.8 * n, 1.9 * len(queries)))
    axes = np.atleast_2d(fig.subplots(len(queries), n, squeeze=False))
    for row, label in enumerate(queries):
        per_image = maps.of(label)
        for col in range(n):
            ax, img = axes[row, col], pictures[col]
            ax.imshow(img)
            heat = Image.fromarray(per_image[col].astype(np.float32)).resize(img.size, Image.Resampling.BILINEAR)
            ax.imshow(np.asarray(heat), cmap="inferno", alpha=0.55)
            if boxes is not None and np.isfinite(boxes[col]).all():
                x0, y0, x1, y1 = np.asarray(boxes[col]) * np.array([img.width, img.height] * 2)
                ax.add_patch(_rectangle(x0, y0, x1, y1))
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.tight_layout()
    return atomic_write(Path(path), lambda p: fig.savefig(p, format="png", dpi=80))


def _rectangle(x0: float, y0: float, x1: float, y1: float):
    from matplotlib.patches import Rectangle

    return Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="cyan", linewidth=1.2)
