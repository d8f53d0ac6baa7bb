import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from nilearn import datasets

from braincode.report.plots import _outline_segments, surface_figure
from braincode.report.summary import render_summary, write_summary


def test_summary_escapes_text_and_inlines_figures(tmp_path):
    fig = Figure()
    fig.subplots().plot([0, 1])
    table = pd.DataFrame({"roi": ["<script>alert(1)</script>"], "r": [0.25]})
    html = render_summary("a & b", {"t": table}, {"f": fig}, ["note <b>"])
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;" in html and "a &amp; b" in html and "note &lt;b&gt;" in html
    assert "0.250" in html and "data:image/png;base64," in html
    path = write_summary(tmp_path / "x" / "index.html", html)
    assert path.read_text() == html
    assert [p.name for p in path.parent.iterdir()] == ["index.html"]


def _render(fig) -> np.ndarray:
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].astype(int)


def test_scattered_vertices_paint_and_the_map_has_a_labelled_colour_bar():
    rng = np.random.default_rng(0)
    rows = [pd.DataFrame({"hemisphere": hemi, "vertex": rng.choice(10242, 120, replace=False), "r": 0.8,
                          "roi:floc-faces": ""}) for hemi in ("lh", "rh")]
    fig = surface_figure(pd.concat(rows), "r", label="r (unitless)", vmax=1.0)
    bars = [ax for ax in fig.axes if ax.get_xlabel() == "r (unitless)"]
    assert len(bars) == 1, "one colour bar, labelled with the values' meaning and unit"
    rgb = _render(fig)
    hot = (rgb[..., 0] - rgb[..., 2] > 60) & (rgb[..., 0] > 150)
    bar_rows = int(bars[0].get_window_extent().height)
    # 240 isolated vertices, each painting its faces in 8 panels: far more than the colour bar's own hot pixels
    assert hot.sum() > 1500 + 600 * bar_rows


def test_outline_encloses_an_roi_between_its_vertices():
    mesh = datasets.load_fsaverage("fsaverage5")["flat"].parts["left"]
    xy, faces = np.asarray(mesh.coordinates)[:, :2], np.asarray(mesh.faces)
    centre = faces[5000, 0]
    inside = np.zeros(len(xy), bool)
    inside[np.argsort(np.linalg.norm(xy - xy[centre], axis=1))[:40]] = True
    segments = _outline_segments(faces, xy, inside)
    assert len(segments) > 0
    ends = np.round(segments.reshape(-1, 2), 6)
    _, counts = np.unique(ends, axis=0, return_counts=True)
    assert (counts % 2 == 0).all(), "every segment end meets another: the outline is closed"
    # the outline runs between the ROI and its neighbours: every ROI vertex is nearer its own centre than the line
    inner = np.linalg.norm(xy[inside] - xy[centre], axis=1).max()
    assert np.linalg.norm(segments.reshape(-1, 2) - xy[centre], axis=1).min() > 0.3 * inner
