"""The pipeline configuration: a YAML file validated into frozen dataclasses, with errors that teach.

Example (``pipelines/demo.yaml``)::

    name: demo
    output: demo_pipeline            # relative paths are relative to the config file
    data: {format: synthetic, root: data, n_train: 200, n_test: 40, seed: 0}
    subjects: [subj01, subj02]
    features:
      - {model: "open_clip:tiny-vit@random", layers: [blocks.1, pooled], pool: grid, grid: 4}
      - {model: minilm, text: true}
    encoding: {readout: ridge, cv: 5}
    steps: [validate, extract, fit, evaluate, report]
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from braincode.errors import ConfigError, MissingFileError

#: Every step a pipeline can run, in the order they run.
ALL_STEPS = ("validate", "extract", "fit", "evaluate", "caption", "synthesize", "report")
#: Steps that run only when their config section is given.
OPTIONAL_STEPS = ("caption", "synthesize")
DATA_FORMATS = ("algonauts", "synthetic", "nsd")
READOUTS = ("ridge",)


@dataclass(frozen=True)
class DataConfig:
    """Where the subjects' data are and how to read them.

    ``format="synthetic"`` generates them (``n_train``, ``n_test``, ``seed``); ``options`` are passed to the
    loader (:func:`braincode.data.load_nsd` for ``nsd``, e.g. ``space``, ``betas``, ``sessions``).
    """

    format: str
    root: Path
    n_train: int = 300
    n_test: int = 50
    seed: int = 0
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class FeatureConfig:
    """One feature source: a model id, its layers, how tokens are pooled, and whether it reads captions."""

    model: str
    layers: tuple[str, ...] = ("pooled",)
    pool: str = "grid"
    grid: int = 4
    text: bool = False


@dataclass(frozen=True)
class EncodingConfig:
    """The encoder: readout kind, cross-validation folds, alpha grid (``None`` = the encoder's default), and
    permutations for per-voxel p-values (0 = none)."""

    readout: str = "ridge"
    cv: int = 5
    alphas: tuple[float, ...] | None = None
    permutations: int = 0
    random_state: int = 0


@dataclass(frozen=True)
class CaptionConfig:
    """BrainSCUBA captions per ROI: an embedding ``model`` (of the captions with ``text``, else of the images),
    a linear encoder on its normalised embeddings, projection onto the subject's training stimuli as the bank,
    nearest-caption decoding; plus the ``top`` bank images of each ROI."""

    model: str = "minilm"
    text: bool = True
    temperature: float = 150.0
    top: int = 6


@dataclass(frozen=True)
class SynthesizeConfig:
    """BrainDiVE images per ROI of ``rois``: ``n`` seeds each, guided by the first image feature source's encoder
    through ``diffusion`` (``tiny@random``, ``sd21-base@random``, or a local diffusers folder)."""

    rois: tuple[str, ...] = ()
    diffusion: str = "tiny@random"
    n: int = 2
    steps: int = 10
    scale: float = 130.0


@dataclass(frozen=True)
class PipelineConfig:
    """A whole pipeline run: data, subjects, features, encoding, steps and where outputs go."""

    name: str
    output: Path
    data: DataConfig
    subjects: tuple[str, ...]
    features: tuple[FeatureConfig, ...]
    encoding: EncodingConfig = field(default_factory=EncodingConfig)
    caption: CaptionConfig | None = None
    synthesize: SynthesizeConfig | None = None
    steps: tuple[str, ...] = ALL_STEPS
    cache: Path | None = None
    device: str = "auto"
    source: Path | None = None

    @property
    def cache_dir(self) -> Path:
        """The feature cache (shared by subjects: it is keyed by content)."""
        return self.cache if self.cache is not None else self.output / "cache"

    def digest(self, *parts: str) -> str:
        """SHA-256 of the named parts of the configuration (all parts but ``source`` when none are named)."""
        content = {k: v for k, v in asdict(self).items() if k != "source" and (not parts or k in parts)}
        return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def _section(cls: type, raw: Any, where: str, path: Path) -> dict:
    names = [f.name for f in fields(cls)]
    if not isinstance(raw, dict):
        raise ConfigError(f"`{where}` must be a mapping", path=path, expected=f"keys among {names}",
                          found=type(raw).__name__, fix=f"write `{where}:` followed by indented key: value lines")
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in `{where}`", path=path, expected=f"keys among {names}",
                          found=str(unknown), fix="check the spelling against the documented schema")
    return dict(raw)


def _choice(value: str, allowed: tuple[str, ...], where: str, path: Path) -> str:
    if value not in allowed:
        raise ConfigError(f"invalid `{where}`", path=path, expected=f"one of {list(allowed)}", found=repr(value),
                          fix=f"set `{where}` to one of {list(allowed)}")
    return value


def parse_config(raw: Any, path: Path) -> PipelineConfig:
    """Validate a parsed YAML mapping into a :class:`PipelineConfig`; relative paths resolve against ``path``'s folder."""
    top = _section(PipelineConfig, raw, "top level", path)
    for key in ("name", "output", "data", "subjects", "features"):
        if key not in top:
            raise ConfigError(f"missing key `{key}`", path=path, expected=f"a `{key}:` entry", found="none",
                              fix="see pipelines/demo.yaml for a complete example")
    base = path.parent
    data = _section(DataConfig, top.pop("data"), "data", path)
    data["format"] = _choice(str(data.get("format")), DATA_FORMATS, "data.format", path)
    data["root"] = base / data.get("root", "data")
    features = top.pop("features")
    if not isinstance(features, list) or not features:
        raise ConfigError("`features` must be a non-empty list", path=path, expected="a list of {model: ...}",
                          found=repr(features), fix="list at least one feature source")
    feats = []
    for i, f in enumerate(features):
        f = _section(FeatureConfig, f, f"features[{i}]", path)
        if "model" not in f:
            raise ConfigError(f"features[{i}] has no model", path=path, expected="model: source:name[@weights]",
                              found=str(f), fix="add a model id such as open_clip:ViT-B-32@openai")
        f["layers"] = tuple(f.get("layers", ("pooled",)))
        feats.append(FeatureConfig(**f))
    enc = _section(EncodingConfig, top.pop("encoding", {}), "encoding", path)
    enc["readout"] = _choice(str(enc.get("readout", "ridge")), READOUTS, "encoding.readout", path)
    if enc.get("alphas") is not None:
        enc["alphas"] = tuple(float(a) for a in enc["alphas"])
    sections = {"caption": CaptionConfig, "synthesize": SynthesizeConfig}
    optional = {}
    for key, cls in sections.items():
        raw_section = top.pop(key, None)
        if raw_section is not None:
            values = _section(cls, raw_section, key, path)
            if "rois" in values:
                values["rois"] = tuple(values["rois"])
            optional[key] = cls(**values)
    given = top.pop("steps", None)
    steps = tuple(given) if given is not None else tuple(s for s in ALL_STEPS if s not in sections or s in optional)
    for s in steps:
        _choice(s, ALL_STEPS, "steps", path)
        if s in sections and s not in optional:
            raise ConfigError(f"step `{s}` needs a `{s}:` section", path=path, expected=f"a `{s}:` mapping",
                              found="none", fix=f"add `{s}: {{}}` for the defaults, or drop `{s}` from steps")
    if "synthesize" in optional and not optional["synthesize"].rois:
        raise ConfigError("`synthesize.rois` is empty", path=path, expected="ROI names, e.g. [FFA-1, PPA]",
                          found="[]", fix="list the ROIs to synthesise images for")
    if "synthesize" in steps and all(f.text for f in feats):
        raise ConfigError("`synthesize` needs an image feature source", path=path,
                          expected="a features entry without text: true", found="text features only",
                          fix="add an image model to features")
    subjects = top.pop("subjects")
    if isinstance(subjects, str) or not subjects:
        raise ConfigError("`subjects` must be a non-empty list", path=path, expected="e.g. [subj01, subj02]",
                          found=repr(subjects), fix="write subjects as a YAML list")
    cache = top.pop("cache", None)
    return PipelineConfig(
        name=str(top.pop("name")),
        output=(base / str(top.pop("output"))).resolve(),
        data=DataConfig(**data),
        subjects=tuple(str(s) for s in subjects),
        features=tuple(feats),
        encoding=EncodingConfig(**enc),
        **optional,
        steps=tuple(s for s in ALL_STEPS if s in steps),
        cache=None if cache is None else base / str(cache),
        device=_choice(str(top.pop("device", "auto")), ("auto", "cpu", "cuda"), "device", path),
        source=path,
    )


def load_config(path: str | Path) -> PipelineConfig:
    """Read and validate a pipeline YAML file.

    Examples
    --------
    >>> cfg = load_config("pipelines/demo.yaml")  # doctest: +SKIP
    >>> cfg.subjects  # doctest: +SKIP
    ('subj01', 'subj02')
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise MissingFileError("pipeline config not found", path=path, expected="a YAML file",
                               found="nothing", fix="pass the path of a config, e.g. pipelines/demo.yaml")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError("the config is not valid YAML", path=path, found=str(exc).splitlines()[0],
                          fix="fix the YAML syntax at the line shown") from exc
    return parse_config(raw, path)
