"""Settings: defaults < YAML recipe < flags < --set; errors name the key and what is
allowed; the resolved settings written to the run folder load back unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from momentlens import cli
from momentlens.engine.config import (
    CHOICES,
    TrainConfig,
    config_from_dict,
    load_config,
    save_config,
)
from momentlens.utils import MomentlensError

REPO = Path(__file__).resolve().parents[2]


def test_precedence_yaml_then_flags_then_set(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: r2d18\nframes: 8\nlr: 0.5\nchannels_last: true\n")
    cfg = load_config(recipe, {"frames": 4, "lr": None, "epochs": 3}, ["epochs=5", "size=64"])
    assert (cfg.model, cfg.frames, cfg.lr, cfg.epochs, cfg.size) == ("r2d18", 4, 0.5, 5, 64)
    assert cfg.channels_last is True and cfg.batch_size == TrainConfig().batch_size


def test_set_takes_several_settings_and_repeats():
    # The README's form (`--set a=1 b=2`) and the repeated one both reach the config.
    args = cli.build_parser().parse_args(
        ["train", "--data", "d", "--set", "lr=0.01", "epochs=3", "--set", "width=0.5"])
    assert args.set == ["lr=0.01", "epochs=3", "width=0.5"]
    cfg = load_config(None, {}, args.set)
    assert (cfg.lr, cfg.epochs, cfg.width) == (0.01, 3, 0.5)


@pytest.mark.parametrize("recipe", sorted((REPO / "configs").rglob("*.yaml")),
                         ids=lambda p: p.stem)
def test_every_recipe_loads(recipe):
    assert isinstance(load_config(recipe), TrainConfig)


@pytest.mark.parametrize("source,where", [
    ("yaml", "r.yaml"), ("flags", "--lerning-rate"), ("set", "--set lerning_rate=0.1")])
def test_unknown_key_names_the_key_and_the_known_ones(tmp_path, source, where):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("lerning_rate: 0.1\n")
    args = {"yaml": (recipe, None, None), "flags": (None, {"lerning_rate": 0.1}, None),
            "set": (None, None, ["lerning_rate=0.1"])}[source]
    with pytest.raises(MomentlensError) as err:
        load_config(*args)
    msg = str(err.value)
    assert "unknown setting 'lerning_rate'" in msg and where in msg
    assert "known settings:" in msg and "batch_size" in msg and "lr" in msg


@pytest.mark.parametrize("key", sorted(CHOICES))
def test_bad_choice_names_the_key_and_the_allowed_values(key):
    with pytest.raises(MomentlensError) as err:
        load_config(None, None, [f"{key}=nonsense"])
    msg = str(err.value)
    assert f"'{key}'" in msg and "nonsense" in msg
    assert ", ".join(CHOICES[key]) in msg


@pytest.mark.parametrize("item,expected", [
    ("epochs=abc", "expected int"), ("epochs=2.5", "expected int"),
    ("lr=fast", "expected a finite number"), ("lr=nan", "expected a finite number"),
    ("lr=.inf", "expected a finite number"), ("channels_last=maybe", "expected bool"),
    ("batch_size=0", "'batch_size' must be at least 1"), ("lr=-1", "'lr' must not be negative"),
    ("width=5", "'width' must be in (0, 4]"), ("label_smoothing=1", "'label_smoothing'"),
    ("lr", "--set expects key=value"),
])
def test_bad_values_are_named(item, expected):
    with pytest.raises(MomentlensError, match=None) as err:
        load_config(None, None, [item])
    assert expected in str(err.value)
    key = item.partition("=")[0]
    if "=" in item:
        assert f"'{key}'" in str(err.value)


def test_bad_recipe_files(tmp_path):
    nested = tmp_path / "nested.yaml"
    nested.write_text("model:\n  name: r3d18\n")
    with pytest.raises(MomentlensError, match="'model'.*flat"):
        load_config(nested)
    with pytest.raises(MomentlensError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [r3d18\n")
    with pytest.raises(MomentlensError, match="not valid YAML"):
        load_config(broken)
    with pytest.raises(MomentlensError, match="cache_features.*finetune=fc"):
        load_config(None, None, ["cache_features=true"])


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(None, {"model": "r2d50", "lr": 0.003}, ["channels_last=true", "notes=a: b"])
    save_config(cfg, tmp_path / "config.yaml")
    text = (tmp_path / "config.yaml").read_text()
    assert text.startswith("#")
    assert config_from_dict(yaml.safe_load(text)) == cfg
    with pytest.raises(MomentlensError, match="unknown setting 'bogus'"):
        config_from_dict({**cfg.to_dict(), "bogus": 1})


def test_cli_reports_config_errors_without_a_traceback(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("optimizer: adam\n")
    rc = cli.main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"),
                   "--config", str(recipe)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "momentlens train: error: bad value 'adam' for 'optimizer'; allowed: sgd, adamw" in err
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()  # nothing written for a bad config
    rc = cli.main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"),
                   "--finetune", "head"])
    assert rc == 2 and "'finetune'; allowed: fc, last_stage, all" in capsys.readouterr().err


def test_learning_rate_beyond_float32_is_a_config_error():
    from momentlens.engine.config import load_config
    from momentlens.utils import MomentlensError

    with pytest.raises(MomentlensError, match="'lr' must be below"):
        load_config(None, {"lr": 1e300})


def test_every_shipped_recipe_loads_from_any_folder(tmp_path, monkeypatch):
    from momentlens.engine.config import list_recipes, load_config

    names = list_recipes()
    assert {"synth/r2d_tiny.yaml", "synth/r3d_tiny.yaml", "mit_mini/r2d50_4f.yaml",
            "mit_mini/r3d101_16f.yaml", "mit_mini/rx3d101_16f.yaml"} <= set(names)
    monkeypatch.chdir(tmp_path)  # no configs/ here: the shipped copies are found
    for name in names:
        cfg = load_config(name)
        assert cfg == load_config(f"configs/{name}")
    assert load_config("synth/r3d_tiny.yaml").frames == 16
    assert load_config("mit_mini/r2d50_4f.yaml").model == "r2d50"
    # A file of that name in the working folder wins over the shipped recipe.
    (tmp_path / "synth").mkdir()
    (tmp_path / "synth" / "r3d_tiny.yaml").write_text("model: r3d10\nframes: 8\n")
    assert load_config("synth/r3d_tiny.yaml").frames == 8


def test_unknown_recipe_names_the_shipped_ones(tmp_path, monkeypatch):
    from momentlens.engine.config import load_config
    from momentlens.utils import MomentlensError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(MomentlensError, match=r"not found \(shipped recipes: .*synth/r3d_tiny"):
        load_config("synth/nope.yaml")
    with pytest.raises(MomentlensError, match="not found"):  # no climbing out of the folder
        load_config("synth/../../engine/config.py")


def test_wheel_carries_the_recipes(tmp_path):
    """`momentlens demo` from an installed wheel needs configs/synth inside the package."""
    import shutil
    import subprocess
    import sys
    import zipfile
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    # Build from a clean copy: a checkout's egg-info (from `pip install -e`) lists its
    # files and would hide a missing package-data declaration.
    tree = tmp_path / "tree"
    shutil.copytree(root / "src", tree / "src",
                    ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, tree / name)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                           "--no-build-isolation", "--disable-pip-version-check", "-q",
                           "-w", str(tmp_path), str(tree)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("momentlens-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for recipe in ("synth/r2d_tiny.yaml", "synth/r3d_tiny.yaml", "mit_mini/rx3d101_16f.yaml"):
        assert f"momentlens/configs/{recipe}" in names, sorted(names)[:20]


def test_did_you_mean_and_choices_from_their_modules():
    from momentlens.data.decode import BACKENDS
    from momentlens.models.base import FINETUNE_MODES

    with pytest.raises(MomentlensError, match=r"unknown setting 'shedule'.*did you mean schedule\?"):
        load_config(None, None, ["shedule=cosine"])
    with pytest.raises(MomentlensError, match=r"allowed: sgd, adamw \(did you mean adamw\?\)"):
        load_config(None, None, ["optimizer=adam"])
    assert CHOICES["backend"] == BACKENDS and CHOICES["finetune"] == FINETUNE_MODES


def test_resume_takes_the_run_settings_then_flags_then_set(tmp_path):
    from momentlens.engine.config import config_of_run, resume_config

    cfg = load_config(None, {"model": "r2d18", "epochs": 3, "out": "elsewhere"})
    save_config(cfg, tmp_path / "config.yaml")
    assert config_of_run(tmp_path) == cfg
    resumed = resume_config(tmp_path, {"epochs": 5, "lr": None}, ["batch_size=2"])
    assert (resumed.model, resumed.epochs, resumed.lr, resumed.batch_size) == (
        "r2d18", 5, cfg.lr, 2)
    assert resumed.out == str(tmp_path)
    with pytest.raises(MomentlensError, match="nothing: no such run folder"):
        config_of_run(tmp_path / "nothing")  # a typo in the path: said as such
    (tmp_path / "data").mkdir()
    with pytest.raises(MomentlensError, match="not a momentlens run folder"):
        config_of_run(tmp_path / "data")


def test_flip_probability_reaches_the_training_dataset(tmp_path):
    from momentlens.data.layout import Split
    from momentlens.engine.factory import make_dataset
    from momentlens.models.spec import InputSpec

    cfg = load_config("ssv2/r3d50_16f.yaml", {"data": str(tmp_path)})
    assert cfg.flip_p == 0.0
    spec = InputSpec(sampler="clip", frames=4, size=32, norm="none")
    split = Split(root=tmp_path, name="training", classes=["a"], records=[])
    assert make_dataset(cfg, spec, split, True, None).transform.flip_p == 0.0
    assert load_config(None, {}).flip_p == 0.5
    with pytest.raises(MomentlensError, match="flip_p"):
        load_config(None, {}, ["flip_p=1.5"])
