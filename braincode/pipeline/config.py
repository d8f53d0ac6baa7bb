"""The pipeline configuration: a YAML file validated into frozen dataclasses, with errors that point to the line.

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

Every field is typed when the file is read (a list is a list, a number a number, a choice one of its values), so a
typo fails before any work starts, with the file and line of the value.
"""

from __future__ import annotations

import hashlib
import json
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from braincode.errors import ConfigError, MissingFileError

#: Every step a pipeline can run, in the order they run.
ALL_STEPS = ("validate", "extract", "fit", "evaluate", "caption", "synthesize", "report")
#: Steps that run only when their config section is given.
OPTIONAL_STEPS = ("caption", "synthesize")
DATA_FORMATS = ("algonauts", "synthetic", "nsd", "volume", "surface")
CAPTION_ENCODERS = ("adamw", "ridge")
#: ``tfidf``: word TF-IDF on the held-out captions; ``minilm``: the offline MiniLM sentence model.
CAPTION_SCORERS = ("tfidf", "minilm")
READOUTS = ("ridge",)
DEVICES = ("auto", "cpu", "cuda")
#: :data:`braincode.features.pooling.POOL_MODES`, named here so that reading a config does not import torch
#: (a test checks that they agree).
POOL_MODES = ("mean", "cls", "grid")


def _f(default: Any = MISSING, *, choices: tuple = (), minimum: float | None = None, positive: bool = False):
    """A dataclass field with the schema's checks: allowed values, a minimum, or strictly positive (numbers and
    list items alike)."""
    return field(default=default, metadata={"choices": choices, "minimum": minimum, "positive": positive})


@dataclass(frozen=True)
class DataConfig:
    """Where the subjects' data are and how to read them.

    ``format="synthetic"`` generates them (``n_train``, ``n_test``, ``seed``); the other formats are read by
    :func:`braincode.data.load_subject`, with ``options`` passed to the layout's loader (e.g. ``space``,
    ``betas``, ``sessions`` for ``nsd``).
    """

    format: str = _f(choices=DATA_FORMATS)
    root: Path = field(default=Path("data"))
    n_train: int = _f(300, minimum=1)
    n_test: int = _f(50, minimum=1)
    seed: int = _f(0, minimum=0)
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class FeatureConfig:
    """One feature source: a model id, its layers, how tokens are pooled, and whether it reads captions."""

    model: str = _f()
    layers: tuple[str, ...] = _f(("pooled",))
    pool: str = _f("grid", choices=POOL_MODES)
    grid: int = _f(4, minimum=1)
    text: bool = _f(False)


@dataclass(frozen=True)
class EncodingConfig:
    """The encoder: readout kind, banded ridge (one regularisation per feature space), cross-validation folds,
    alpha grid (``None`` = the encoder's default), and permutations for per-voxel p-values (0 = none)."""

    readout: str = _f("ridge", choices=READOUTS)
    banded: bool = _f(False)
    cv: int = _f(5, minimum=2)
    alphas: tuple[float, ...] | None = _f(None, positive=True)
    permutations: int = _f(0, minimum=0)
    random_state: int = _f(0, minimum=0)


@dataclass(frozen=True)
class CaptionConfig:
    """BrainSCUBA captions per ROI, scored on held-out images.

    ``model`` embeds the bank (its captions with ``text``, else its images); ``bank`` is a ``braincode bank``
    folder of images the subject never saw (for synthetic data, when left out: ``n_bank`` images of another
    synthetic draw). BrainSCUBA's linear encoder (``encoder``: the published AdamW schedule, or ridge) leaves
    ``holdout`` of the training images out; voxel weights are projected onto the bank (``temperature``) and
    decoded by the nearest bank caption (the retrieval baseline); ROI captions are scored on the held-out images
    by ``scorer`` (a text model other than the one that chose them); plus the ``top`` images of each ROI."""

    model: str = _f("minilm")
    text: bool = _f(True)
    bank: Path | None = None
    n_bank: int = _f(200, minimum=1)
    encoder: str = _f("adamw", choices=CAPTION_ENCODERS)
    holdout: float = _f(0.2, positive=True)
    scorer: str = _f("tfidf", choices=CAPTION_SCORERS)
    temperature: float = _f(150.0, positive=True)
    top: int = _f(6, minimum=1)


@dataclass(frozen=True)
class SynthesizeConfig:
    """BrainDiVE images per ROI of ``rois``: ``n`` seeds each, guided by the first image feature source's encoder
    through ``diffusion`` (``tiny@random``, ``sd21-base@random``, or a local diffusers folder)."""

    rois: tuple[str, ...] = _f(())
    diffusion: str = _f("tiny@random")
    n: int = _f(2, minimum=1)
    steps: int = _f(10, minimum=1)
    scale: float = _f(130.0, minimum=0)


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


class _Schema:
    """Checks values against the dataclasses' types, naming the file and line of each bad value."""

    def __init__(self, path: Path, lines: dict[tuple, int]) -> None:
        self.path, self.lines = path, lines

    def error(self, key: tuple, what: str, *, expected: str, found: Any, fix: str | None = None) -> ConfigError:
        line = next((self.lines[key[:i]] for i in range(len(key), -1, -1) if key[:i] in self.lines), None)
        where = self.path if line is None else f"{self.path}:{line}"
        shown = found if isinstance(found, str) and found.startswith("<") else repr(found)
        return ConfigError(what, path=where, expected=expected, found=shown, fix=fix)

    @staticmethod
    def name(key: tuple) -> str:
        return "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in key).lstrip(".")

    def mapping(self, raw: Any, key: tuple, allowed: list[str]) -> dict:
        where = self.name(key) or "top level"
        if not isinstance(raw, dict):
            raise self.error(key, f"`{where}` must be a mapping", expected=f"keys among {allowed}",
                             found=f"<{type(raw).__name__}>", fix=f"write `{where}:` followed by key: value lines")
        unknown = sorted(set(map(str, raw)) - set(allowed))
        if unknown:
            raise self.error(key + (unknown[0],), f"unknown key(s) {unknown} in `{where}`",
                             expected=f"keys among {allowed}", found=unknown[0],
                             fix="check the spelling against the documented schema")
        return dict(raw)

    def section(self, cls: type, raw: Any, key: tuple) -> Any:
        """Build dataclass ``cls`` from mapping ``raw``, typing every field."""
        hints = typing.get_type_hints(cls)
        values = self.mapping(raw, key, [f.name for f in fields(cls)])
        out = {}
        for f in fields(cls):
            if f.name not in values:
                if f.default is MISSING and f.default_factory is MISSING:
                    raise self.error(key, f"`{self.name(key + (f.name,))}` is missing", expected=f"a `{f.name}:` entry",
                                     found="<none>", fix="see pipelines/demo.yaml for a complete example")
                continue
            out[f.name] = self.value(values[f.name], hints[f.name], key + (f.name,), f.metadata)
        return cls(**out)

    def value(self, value: Any, kind: Any, key: tuple, meta: typing.Mapping) -> Any:
        """``value`` as type ``kind`` (str, int, float, bool, Path, dict, tuple[X, ...], optional)."""
        args = typing.get_args(kind)
        if type(None) in args:
            if value is None:
                return None
            kind = next(a for a in args if a is not type(None))
            args = typing.get_args(kind)
        if typing.get_origin(kind) is tuple:
            if not isinstance(value, list):
                example = "[blocks.1, pooled]" if key[-1] == "layers" else "[a, b]"
                raise self.error(key, f"`{self.name(key)}` must be a list", expected=f"a YAML list, e.g. {example}",
                                 found=value, fix=f"write `{key[-1]}: [{value}]` for a single item")
            return tuple(self.value(v, args[0], key + (i,), meta) for i, v in enumerate(value))
        return self.scalar(value, kind, key, meta)

    def scalar(self, value: Any, kind: Any, key: tuple, meta: typing.Mapping) -> Any:
        names = {str: "a text", int: "an integer", float: "a number", bool: "true or false", Path: "a path",
                 dict: "a mapping"}
        ok = {
            str: isinstance(value, (str, int, float)) and not isinstance(value, bool),
            Path: isinstance(value, str),
            int: isinstance(value, int) and not isinstance(value, bool),
            float: isinstance(value, (int, float)) and not isinstance(value, bool),
            bool: isinstance(value, bool),
            dict: isinstance(value, dict),
        }[kind]
        if not ok:
            raise self.error(key, f"`{self.name(key)}` must be {names[kind]}", expected=names[kind], found=value)
        value = kind(value)
        if meta.get("choices") and value not in meta["choices"]:
            raise self.error(key, f"invalid `{self.name(key)}`", expected=f"one of {list(meta['choices'])}",
                             found=value, fix=f"set `{key[-1]}` to one of {list(meta['choices'])}")
        if meta.get("minimum") is not None and value < meta["minimum"]:
            raise self.error(key, f"`{self.name(key)}` is too small", expected=f"at least {meta['minimum']}",
                             found=value)
        if meta.get("positive") and not value > 0:
            raise self.error(key, f"`{self.name(key)}` must be positive", expected="a number > 0", found=value)
        return value


def parse_config(raw: Any, path: Path, lines: dict[tuple, int] | None = None) -> PipelineConfig:
    """Validate a parsed YAML mapping into a :class:`PipelineConfig`; relative paths resolve against ``path``'s
    folder; ``lines`` (key path -> line number) lets errors point to the line.

    Examples
    --------
    >>> from pathlib import Path
    >>> raw = {"name": "t", "output": "out", "data": {"format": "synthetic"}, "subjects": ["subj01"],
    ...        "features": [{"model": "minilm", "text": True}]}
    >>> parse_config(raw, Path("/tmp/c.yaml")).encoding.cv
    5
    >>> parse_config({**raw, "encoding": {"cv": "three"}}, Path("/tmp/c.yaml"), {("encoding", "cv"): 4})
    Traceback (most recent call last):
    braincode.errors.ConfigError: /tmp/c.yaml:4: `encoding.cv` must be an integer; expected an integer; found 'three'
    """
    schema = _Schema(path, lines or {})
    top_keys = [f.name for f in fields(PipelineConfig) if f.name != "source"]
    top = schema.mapping(raw, (), top_keys)
    for key in ("name", "output", "data", "subjects", "features"):
        if key not in top:
            raise schema.error((), f"missing key `{key}`", expected=f"a `{key}:` entry", found="<none>",
                               fix="see pipelines/demo.yaml for a complete example")
    base = path.parent
    data = schema.section(DataConfig, top["data"], ("data",))
    features = top["features"]
    if not isinstance(features, list) or not features:
        raise schema.error(("features",), "`features` must be a non-empty list", expected="a list of {model: ...}",
                           found=features, fix="list at least one feature source")
    feats = tuple(schema.section(FeatureConfig, f, ("features", i)) for i, f in enumerate(features))
    subjects = top["subjects"]
    if not isinstance(subjects, list) or not subjects:
        raise schema.error(("subjects",), "`subjects` must be a non-empty list", expected="e.g. [subj01, subj02]",
                           found=subjects, fix="write subjects as a YAML list")
    optional = {key: schema.section(cls, top[key], (key,)) for key, cls in
                (("caption", CaptionConfig), ("synthesize", SynthesizeConfig)) if top.get(key) is not None}
    if optional.get("caption") is not None and optional["caption"].bank is not None:
        optional["caption"] = replace(optional["caption"], bank=base / optional["caption"].bank)
    given = top.get("steps")
    if given is None:
        steps = tuple(s for s in ALL_STEPS if s not in OPTIONAL_STEPS or s in optional)
    else:
        steps = schema.value(given, tuple[str, ...], ("steps",), {"choices": ALL_STEPS})
    config = PipelineConfig(
        name=schema.value(top["name"], str, ("name",), {}),
        output=(base / schema.value(top["output"], Path, ("output",), {})).resolve(),
        data=DataConfig(**{**asdict(data), "root": base / data.root}),
        subjects=schema.value(subjects, tuple[str, ...], ("subjects",), {}),
        features=feats,
        encoding=schema.section(EncodingConfig, top.get("encoding", {}), ("encoding",)),
        **optional,
        steps=tuple(s for s in ALL_STEPS if s in steps),
        cache=None if top.get("cache") is None else base / schema.value(top["cache"], Path, ("cache",), {}),
        device=schema.value(top.get("device", "auto"), str, ("device",), {"choices": DEVICES}),
        source=path,
    )
    _check_steps(config, schema)
    return config


def _check_steps(config: PipelineConfig, schema: _Schema) -> None:
    for s in OPTIONAL_STEPS:
        if s in config.steps and getattr(config, s) is None:
            raise schema.error(("steps",), f"step `{s}` needs a `{s}:` section", expected=f"a `{s}:` mapping",
                               found="<none>", fix=f"add `{s}: {{}}` for the defaults, or drop `{s}` from steps")
    caption = config.caption
    if caption is not None and caption.holdout >= 1:
        raise schema.error(("caption", "holdout"), "`caption.holdout` is a fraction of the training images",
                           expected="a number between 0 and 1, e.g. 0.2", found=caption.holdout)
    if caption is not None and caption.text and caption.scorer == caption.model:
        raise schema.error(("caption", "scorer"), "the captions' own text model cannot score them (optimistic)",
                           expected=f"a scorer other than {caption.model!r}", found=caption.scorer,
                           fix="set `scorer: tfidf`")
    if "caption" in config.steps and caption.bank is None and config.data.format != "synthetic":
        raise schema.error(("caption",), "`caption` needs a bank of images the subject never saw",
                           expected="`bank: FOLDER` (written by `braincode bank`)", found="<none>",
                           fix="build one with `braincode bank --images DIR --model MODEL --out BANK`")
    if config.synthesize is not None and not config.synthesize.rois:
        raise schema.error(("synthesize",), "`synthesize.rois` is empty", expected="ROI names, e.g. [FFA-1, PPA]",
                           found="<[]>", fix="list the ROIs to synthesise images for")
    if "synthesize" in config.steps and all(f.text for f in config.features):
        raise schema.error(("features",), "`synthesize` needs an image feature source",
                           expected="a features entry without text: true", found="<text features only>",
                           fix="add an image model to features")


def _key_lines(node: yaml.Node, key: tuple = ()) -> dict[tuple, int]:
    """1-based line of every key (and list item) in a composed YAML document, by key path."""
    lines = {key: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            lines.update(_key_lines(v, key + (k.value,)))
            lines[key + (k.value,)] = k.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            lines.update(_key_lines(v, key + (i,)))
    return lines


def load_config(path: str | Path) -> PipelineConfig:
    """Read and validate a pipeline YAML file.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "c.yaml").write_text("name: t\\noutput: out\\ndata: {format: synthetic}\\n"
    ...                                    "subjects: [subj01]\\nfeatures:\\n  - {model: minilm, layers: pooled}\\n")
    >>> load_config(folder / "c.yaml")
    Traceback (most recent call last):
    braincode.errors.ConfigError: .../c.yaml:6: `features[0].layers` must be a list; ...
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise MissingFileError("pipeline config not found", path=path, expected="a YAML file",
                               found="nothing", fix="pass the path of a config, e.g. pipelines/demo.yaml")
    text = path.read_text()
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = path if mark is None else f"{path}:{mark.line + 1}"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        shown = "" if mark is None else f" in `{text.splitlines()[mark.line].strip()}`" if mark.line < len(
            text.splitlines()) else ""
        raise ConfigError("the config is not valid YAML", path=where, found=f"{problem}{shown}",
                          fix="fix the YAML syntax at that line") from None
    return parse_config(raw, path, _key_lines(node) if node is not None else {})
