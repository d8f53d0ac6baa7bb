"""A one-page, self-contained HTML summary: tables and inline figures, every text HTML-escaped."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import pandas as pd
from matplotlib.figure import Figure
from PIL import Image

import braincode
from braincode.atomic import atomic_write

#: Side in pixels of gallery thumbnails (shown at 96 CSS pixels; the extra third keeps them sharp on HiDPI screens).
THUMBNAIL = 128


def _fmt(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("braincode.report", "templates"), autoescape=jinja2.select_autoescape(["html"])
    )
    env.filters["fmt"] = _fmt
    return env


def figure_png(fig: Figure) -> str:
    """A matplotlib figure as a base64-encoded PNG, ready to inline into a page."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


@dataclass
class Gallery:
    """One ROI's section of a report: a caption and rows of images (PIL images or PNG files)."""

    title: str
    caption: str = ""
    rows: dict[str, list] = field(default_factory=dict)


def image_png(image: Image.Image | str | Path, size: int = 192) -> str:
    """An image (PIL or a file) as a base64 PNG thumbnail at most ``size`` pixels on a side."""
    img = Image.open(image) if isinstance(image, (str, Path)) else image
    img = img.convert("RGB")
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def render_summary(
    title: str,
    tables: dict[str, pd.DataFrame],
    figures: dict[str, Figure] | None = None,
    notes: Sequence[str] = (),
    galleries: Sequence[Gallery] = (),
    pictures: dict[str, Image.Image | str | Path] | None = None,
) -> str:
    """Render the summary page as an HTML string (galleries: one section per ROI, after the tables; pictures:
    whole images by title, at most 1000 pixels wide, after the figures).

    Examples
    --------
    >>> import pandas as pd
    >>> html = render_summary("<demo>", {"scores": pd.DataFrame({"roi": ["FFA-1"], "r": [0.5]})})
    >>> "&lt;demo&gt;" in html and "0.500" in html
    True
    """
    figs = {name: figure_png(fig) for name, fig in (figures or {}).items()}
    figs.update({name: image_png(image, size=1000) for name, image in (pictures or {}).items()})
    sections = [
        {"title": g.title, "caption": g.caption, "rows": {k: [image_png(i, THUMBNAIL) for i in v] for k, v in g.rows.items()}}
        for g in galleries
    ]
    return _env().get_template("summary.html").render(
        title=title, tables=tables, figures=figs, notes=list(notes), galleries=sections, version=braincode.__version__
    )


def write_summary(path: str | Path, html: str) -> Path:
    """Write ``html`` to ``path`` atomically (a failed write leaves nothing behind)."""
    return atomic_write(path, lambda p: p.write_text(html, encoding="utf-8"))
