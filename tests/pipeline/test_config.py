from pathlib import Path

import pytest
import yaml

from braincode.errors import ConfigError, MissingFileError
from braincode.pipeline.config import ALL_STEPS, load_config

REPO = Path(__file__).resolve().parents[2]

GOOD = {
    "name": "t",
    "output": "out",
    "data": {"format": "synthetic", "root": "data", "n_train": 20},
    "subjects": ["subj01"],
    "features": [{"model": "open_clip:tiny-vit@random", "layers": ["blocks.1"]}],
}


def write(tmp_path: Path, content: dict) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(content))
    return path


def test_shipped_configs_validate():
    for name in ("demo.yaml", "algonauts_subject.yaml", "nsd_subject.yaml"):
        cfg = load_config(REPO / "pipelines" / name)
        assert cfg.subjects and cfg.features


def test_paths_resolve_against_config_folder_and_defaults(tmp_path):
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.output == tmp_path / "out"
    assert cfg.data.root == tmp_path / "data"
    assert cfg.steps == tuple(s for s in ALL_STEPS if s not in ("caption", "synthesize"))
    with_interpret = load_config(write(tmp_path, {**GOOD, "caption": {}, "synthesize": {"rois": ["FFA-1"]}}))
    assert with_interpret.steps == ALL_STEPS and with_interpret.caption.model == "minilm"
    assert cfg.features[0].layers == ("blocks.1",)
    assert cfg.cache_dir == tmp_path / "out" / "cache"


def test_digest_changes_with_content_only(tmp_path):
    a = load_config(write(tmp_path, GOOD))
    b = load_config(write(tmp_path, {**GOOD, "encoding": {"cv": 3}}))
    assert a.digest() != b.digest()
    assert a.digest() == load_config(write(tmp_path, GOOD)).digest()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"dat": {}}, "unknown key(s) ['dat'] in `top level`"),
        ({"data": {"format": "bids", "root": "x"}}, "invalid `data.format`"),
        ({"features": []}, "`features` must be a non-empty list"),
        ({"features": [{"layers": ["x"]}]}, "`features[0].model` is missing"),
        ({"steps": ["fit", "plot"]}, "invalid `steps[1]`"),
        ({"subjects": "subj01"}, "`subjects` must be a non-empty list"),
        ({"encoding": {"readout": "mlp"}}, "invalid `encoding.readout`"),
        ({"steps": ["validate", "caption"]}, "step `caption` needs a `caption:` section"),
        ({"synthesize": {"rois": []}}, "`synthesize.rois` is empty"),
        ({"synthesize": {"rois": ["FFA-1"]}, "features": [{"model": "minilm", "text": True}]},
         "`synthesize` needs an image feature source"),
        ({"caption": {"modle": "minilm"}}, "unknown key(s) ['modle'] in `caption`"),
    ],
)
def test_bad_configs_name_file_and_problem(tmp_path, change, message):
    path = write(tmp_path, {**GOOD, **change})
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("features:\n  - {model: m, layers: blocks.1}\n", 6, "`features[0].layers` must be a list"),
        ("features: [{model: m}]\nsteps: validate\n", 6, "`steps` must be a list"),
        ("features:\n  - model: m\n    pool: gird\n", 7, "invalid `features[0].pool`"),
        ("features: [{model: m}]\nencoding: {permutations: -5}\n", 6, "`encoding.permutations` is too small"),
        ("features: [{model: m}]\nencoding:\n  cv: three\n", 7, "`encoding.cv` must be an integer"),
        ("features: [{model: m}]\nencoding: {cv: 1}\n", 6, "`encoding.cv` is too small"),
        ("features: [{model: m}]\nencoding: {alphas: [1, abc]}\n", 6, "`encoding.alphas[1]` must be a number"),
        ("features: [{model: m}]\nencoding: {alphas: [1, 0]}\n", 6, "`encoding.alphas[1]` must be positive"),
        ("features: [{model: m]\n", 5, "not valid YAML"),
    ],
)
def test_values_are_typed_when_read_and_errors_point_to_the_line(tmp_path, text, line, message):
    head = "name: t\noutput: out\ndata: {format: synthetic}\nsubjects: [subj01]\n"
    if text.startswith("features") and "\ndata:" in text:
        head = head.replace("data: {format: synthetic}\n", "")
        text = text.replace("data:", "\ndata:", 1).replace("\n\n", "\n")
    path = tmp_path / "c.yaml"
    path.write_text(head + text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert message in str(err.value)
    assert f"{path}:{line}:" in str(err.value), str(err.value)


def test_missing_key_and_file_and_yaml_syntax(tmp_path):
    content = dict(GOOD)
    del content["subjects"]
    with pytest.raises(ConfigError, match="missing key `subjects`"):
        load_config(write(tmp_path, content))
    with pytest.raises(MissingFileError, match="pipeline config not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_pool_choices_are_the_pooling_modes():
    from braincode.features.pooling import POOL_MODES
    from braincode.pipeline import config

    assert set(config.POOL_MODES) == set(POOL_MODES)
