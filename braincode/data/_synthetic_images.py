"""Images of the synthetic subject: smooth textures with faces, bodies, houses and words, and their captions."""

from __future__ import annotations

import string
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

CATEGORIES = ("face", "body", "place", "word")
_BACKGROUNDS = {
    "reddish": (0.66, 0.46, 0.42), "greenish": (0.46, 0.62, 0.46), "bluish": (0.44, 0.52, 0.70),
    "yellowish": (0.68, 0.64, 0.42), "grey": (0.56, 0.56, 0.56),
}  # fmt: skip
_NOUNS = {"face": "face", "body": "person", "place": "house"}
_SCALE = 2  # draw at twice the size, then downsample (anti-aliasing)


@dataclass(frozen=True)
class _Object:
    category: str
    x: float  # centre, fraction of the image width (left = 0)
    y: float  # centre, fraction of the image height (top = 0)
    size: float  # extent, fraction of the image width
    text: str = ""


@lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow < 10.1 or no FreeType: fixed-size bitmap font
        return ImageFont.load_default()


def _texture(rng: np.random.Generator, size: int, base: tuple[float, float, float]) -> Image.Image:
    """Smooth texture of the base colour: a few random values per axis (mostly luminance), upsampled bicubically."""
    n = int(rng.integers(3, 7))
    lum, tint = 0.15 * rng.standard_normal((n, n, 1)), 0.05 * rng.standard_normal((n, n, 3))
    coarse = np.clip(np.asarray(base) + lum + tint, 0, 1)
    return Image.fromarray((coarse * 255).astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC)


def _draw_object(draw: ImageDraw.ImageDraw, obj: _Object, rng: np.random.Generator, px: int) -> None:
    """Draw one object on a ``px``-wide canvas."""
    s, cx, cy = obj.size * px, obj.x * px, obj.y * px
    dark = tuple(int(v) for v in rng.integers(0, 60, 3))
    lw = max(2, round(0.05 * s))
    if obj.category == "face":
        skin = tuple(int(v) for v in (rng.uniform(0.75, 1.0) * np.array([240, 200, 170])))
        draw.ellipse(
            (cx - 0.4 * s, cy - 0.5 * s, cx + 0.4 * s, cy + 0.5 * s), fill=skin, outline=dark, width=lw
        )
        for side in (-1, 1):
            ex, ey, r = cx + side * 0.17 * s, cy - 0.12 * s, 0.07 * s
            draw.ellipse((ex - r, ey - r * 0.7, ex + r, ey + r * 0.7), fill=dark)
        draw.arc((cx - 0.18 * s, cy + 0.05 * s, cx + 0.18 * s, cy + 0.3 * s), 20, 160, fill=dark, width=lw)
    elif obj.category == "body":
        r = 0.11 * s
        draw.ellipse((cx - r, cy - 0.5 * s, cx + r, cy - 0.5 * s + 2 * r), outline=dark, width=lw)
        neck, hip = cy - 0.5 * s + 2 * r, cy + 0.08 * s
        draw.line((cx, neck, cx, hip), fill=dark, width=lw)
        for side in (-1, 1):
            draw.line((cx, neck + 0.08 * s, cx + side * 0.3 * s, cy - 0.02 * s), fill=dark, width=lw)
            draw.line((cx, hip, cx + side * 0.22 * s, cy + 0.5 * s), fill=dark, width=lw)
    elif obj.category == "place":
        wall = tuple(int(v) for v in rng.integers(170, 250, 3))
        roof = tuple(int(v) for v in (rng.integers(120, 200), rng.integers(20, 70), rng.integers(20, 60)))
        draw.rectangle(
            (cx - 0.4 * s, cy - 0.05 * s, cx + 0.4 * s, cy + 0.45 * s), fill=wall, outline=dark, width=lw
        )
        draw.polygon(
            [(cx - 0.5 * s, cy - 0.05 * s), (cx + 0.5 * s, cy - 0.05 * s), (cx, cy - 0.45 * s)], fill=roof
        )
        draw.rectangle((cx - 0.08 * s, cy + 0.2 * s, cx + 0.08 * s, cy + 0.45 * s), fill=dark)
        draw.rectangle((cx + 0.16 * s, cy + 0.05 * s, cx + 0.32 * s, cy + 0.18 * s), fill=(120, 170, 220))
    else:  # word
        left, _, right, _ = draw.textbbox((0, 0), obj.text, font=_font(100))
        font = _font(max(8, round(100 * s / max(right - left, 1))))  # text as wide as the object's extent
        left, top, right, bottom = draw.textbbox((0, 0), obj.text, font=font)
        draw.text((cx - (left + right) / 2, cy - (top + bottom) / 2), obj.text, fill=dark, font=font)


def _render(rng: np.random.Generator, size: int) -> tuple[Image.Image, list[_Object], str]:
    """One stimulus: texture, 0-3 objects, and the background's colour name."""
    background = list(_BACKGROUNDS)[int(rng.integers(len(_BACKGROUNDS)))]
    canvas = _texture(rng, size * _SCALE, _BACKGROUNDS[background])
    draw = ImageDraw.Draw(canvas)
    objects = []
    for _ in range(int(rng.integers(0, 4))):
        category = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
        extent = float(rng.uniform(0.25, 0.5))
        x, y = (float(v) for v in rng.uniform(extent / 2, 1 - extent / 2, 2))
        text = (
            "".join(rng.choice(list(string.ascii_uppercase), int(rng.integers(3, 6))))
            if category == "word"
            else ""
        )
        obj = _Object(category, round(x, 4), round(y, 4), round(extent, 4), text)
        _draw_object(draw, obj, rng, size * _SCALE)
        objects.append(obj)
    return canvas.resize((size, size), Image.Resampling.LANCZOS), objects, background


def _where(obj: _Object) -> str:
    col = "left" if obj.x < 1 / 3 else "right" if obj.x > 2 / 3 else ""
    row = "top" if obj.y < 1 / 3 else "bottom" if obj.y > 2 / 3 else ""
    if row and col:
        return f"at the {row} {col}"
    if row:
        return f"at the {row}"
    return f"on the {col}" if col else "in the centre"


def caption(objects: list[_Object], background: str) -> str:
    """Describe a synthetic image, e.g. ``'a large face on the left and a house at the top, on a bluish background'``.

    Examples
    --------
    >>> caption([], "grey")
    'a smooth grey texture with nothing on it'
    """
    if not objects:
        return f"a smooth {background} texture with nothing on it"
    parts = []
    for obj in objects:
        adjective = "small " if obj.size < 0.33 else "large " if obj.size > 0.43 else ""
        noun = f'the word "{obj.text}"' if obj.category == "word" else f"a {adjective}{_NOUNS[obj.category]}"
        parts.append(f"{noun} {_where(obj)}")
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"{listed}, on a {background} background"


def _contrast_energy(images: np.ndarray, grid: int) -> np.ndarray:
    """Local contrast energy (squared band-pass luminance) of uint8 RGB images, pooled to a ``grid`` x ``grid`` map."""
    from scipy.ndimage import gaussian_filter  # scipy.ndimage is slow to import; only generation needs it

    gray = images.astype(np.float32).mean(-1) / 255.0
    size = gray.shape[1]
    band = gaussian_filter(gray, (0, 0.5, 0.5)) - gaussian_filter(gray, (0, size / 48, size / 48))
    energy = band**2
    f = size // grid
    return energy[:, : grid * f, : grid * f].reshape(len(images), grid, f, grid, f).mean((2, 4))
