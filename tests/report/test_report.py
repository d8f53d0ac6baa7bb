import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from braincode.report.plots import FSAVERAGE5_VERTICES, fsaverage5_values, surface_figure
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


def test_fsaverage5_values_keeps_first_10242_vertices():
    out = fsaverage5_values(np.array([0, 5, 10242, 163841]), np.array([1.0, 2.0, 3.0, 4.0]))
    assert out.shape == (FSAVERAGE5_VERTICES,)
    assert out[0] == 1.0 and out[5] == 2.0 and np.isnan(out).sum() == FSAVERAGE5_VERTICES - 2


def test_surface_figure_colours_the_scored_patch():
    from nilearn import datasets

    sphere = datasets.load_fsaverage("fsaverage5")["sphere"]
    rows = []
    for hemi, side in (("lh", "left"), ("rh", "right")):
        xyz = sphere.parts[side].coordinates
        patch = np.argsort(np.linalg.norm(xyz - xyz[np.argmin(xyz[:, 1])], axis=1))[:300]
        rows.append(pd.DataFrame({"hemisphere": hemi, "vertex": patch, "r": np.linspace(0.5, 1.0, len(patch))}))
    canvas = FigureCanvasAgg(surface_figure(pd.concat(rows), "r"))
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3].astype(int)
    colourful = (np.abs(rgb[..., 0] - rgb[..., 2]) > 60).sum()  # the hot colormap; the background is grey
    assert colourful > 500
