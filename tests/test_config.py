"""Config loading: `_base_` inheritance, dotted overrides, profile merge order, and errors that name the
file, the key and the expectation (the launcher relies on them to refuse a sweep before submitting)."""
from __future__ import annotations

import io
from pathlib import Path

import pytest

from common.paths import CODE_ROOT
from experiments.config import PROFILES_DIR, ConfigError, load_config
from experiments.config.loader import read_yaml


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_base_inheritance_child_wins(tmp_path):
    write(tmp_path, "base.yaml", "rq: rqx\nmodel: {fusion: early, sharing: none}\npretrain: {epochs: 3, batch_size: 5}\n")
    child = write(tmp_path, "child.yaml", "_base_: base.yaml\nmodel: {sharing: all}\npretrain: {epochs: 9}\n")
    cfg = load_config(child, profile="tiny")
    assert cfg.rq == "rqx" and cfg.name == "child"
    assert cfg.model.fusion == "early"  # inherited
    assert cfg.model.sharing == "all"  # child overrides a nested key, siblings stay
    assert (cfg.pretrain.epochs, cfg.pretrain.batch_size) == (9, 5)


def test_base_chain_and_cycle(tmp_path):
    write(tmp_path, "a.yaml", "rq: rqx\nseed: 1\n")
    write(tmp_path, "b.yaml", "_base_: a.yaml\nseed: 2\n")
    c = write(tmp_path, "c.yaml", "_base_: [b.yaml]\n")
    assert load_config(c, profile="tiny").seed == 2
    write(tmp_path, "x.yaml", "_base_: y.yaml\n")
    y = write(tmp_path, "y.yaml", "_base_: x.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(y, profile="tiny")


def test_dotted_overrides(tmp_path):
    run = write(tmp_path, "r.yaml", "rq: rqx\n")
    cfg = load_config(run, ["pretrain.optim.lr=1e-4", "model.sharing=none", "pretrain.enabled=false",
                            "pretrain.optim.betas=[0.8, 0.9]", "seed=7"], profile="tiny")
    assert cfg.pretrain.optim.lr == pytest.approx(1e-4) and isinstance(cfg.pretrain.optim.lr, float)
    assert cfg.model.sharing == "none" and cfg.pretrain.enabled is False
    assert tuple(cfg.pretrain.optim.betas) == (0.8, 0.9) and cfg.seed == 7


def test_unknown_key_names_file_key_and_valid_keys(tmp_path):
    run = write(tmp_path, "typo.yaml", "rq: rqx\npretrain: {epoch: 3}\n")
    with pytest.raises(ConfigError) as e:
        load_config(run, profile="tiny")
    msg = str(e.value)
    assert str(run) in msg and "'pretrain.epoch'" in msg
    assert "valid keys" in msg and "epochs" in msg and "steps_per_epoch" in msg


def test_unknown_override_key(tmp_path):
    run = write(tmp_path, "r.yaml", "rq: rqx\n")
    with pytest.raises(ConfigError) as e:
        load_config(run, ["pretrain.optim.lrr=1"], profile="tiny")
    assert "pretrain.optim.lrr" in str(e.value) and "overrides" in str(e.value) and "lr" in str(e.value)


@pytest.mark.parametrize("text, key, expected", [
    ("pretrain: {epochs: three}", "pretrain.epochs", "expected int"),
    ("model: {fusion: sideways}", "model.fusion", "expected one of 'early'"),
    ("pretrain: {optim: {lr: fast}}", "pretrain.optim.lr", "expected float"),
    ("downstream: {name: av}", "downstream", "expected list"),
    ("pretrain: {enabled: 1}", "pretrain.enabled", "expected bool"),
])
def test_wrong_type_names_expected_type(tmp_path, text, key, expected):
    run = write(tmp_path, "bad.yaml", f"rq: rqx\n{text}\n")
    with pytest.raises(ConfigError) as e:
        load_config(run, profile="tiny")
    msg = str(e.value)
    assert str(run) in msg and f"'{key}'" in msg and expected in msg


def test_duplicate_yaml_keys_rejected(tmp_path):
    run = write(tmp_path, "dup.yaml", "rq: rqx\nseed: 1\nmodel: {fusion: mid}\nseed: 2\n")
    with pytest.raises(ConfigError, match="duplicate key 'seed'"):
        load_config(run, profile="tiny")
    nested = write(tmp_path, "dup2.yaml", "rq: rqx\npretrain:\n  epochs: 1\n  epochs: 2\n")
    with pytest.raises(ConfigError, match="duplicate key 'epochs'"):
        load_config(nested, profile="tiny")


def test_profile_merge_order(tmp_path):
    """profile yaml <- <config dir>/_<profile>.yaml <- run yaml (<- its by_profile) <- overrides."""
    profile = read_yaml(PROFILES_DIR / "tiny.yaml")
    write(tmp_path, "_tiny.yaml", "seed: 5\npretrain: {epochs: 7}\n")
    run = write(tmp_path, "r.yaml", "rq: rqx\nseed: 9\nby_profile: {tiny: {pretrain: {steps_per_epoch: 3}}}\n")
    cfg = load_config(run, profile="tiny")
    assert cfg.profile == "tiny"
    assert cfg.pretrain.batch_size == profile["pretrain"]["batch_size"]  # from the profile
    assert cfg.pretrain.epochs == 7  # the RQ's _tiny.yaml beats the profile
    assert cfg.seed == 9  # the run yaml beats _tiny.yaml
    assert cfg.pretrain.steps_per_epoch == 3  # by_profile of the run yaml
    assert load_config(run, ["seed=11", "pretrain.epochs=2"], profile="tiny").seed == 11  # overrides last
    assert load_config(run, ["pretrain.epochs=2"], profile="tiny").pretrain.epochs == 2
    paper = load_config(run, profile="paper")  # _tiny.yaml and by_profile.tiny do not apply
    assert paper.profile == "paper" and paper.pretrain.epochs == read_yaml(PROFILES_DIR / "paper.yaml")["pretrain"]["epochs"]


def test_unknown_profile(tmp_path):
    run = write(tmp_path, "r.yaml", "rq: rqx\n")
    with pytest.raises(ConfigError, match="unknown profile"):
        load_config(run, profile="huge")


RUN_YAMLS = sorted(p for p in (CODE_ROOT / "experiments").glob("*/configs/*.yaml") if not p.name.startswith("_"))


@pytest.mark.skipif(not RUN_YAMLS, reason="no run configs under experiments/*/configs/ yet")
@pytest.mark.parametrize("profile", ["tiny", "paper"])
def test_every_run_config_loads_and_validates(profile):
    seen = {}
    for path in RUN_YAMLS:
        cfg = load_config(path, profile=profile)
        assert cfg.profile == profile and cfg.name == path.stem
        assert cfg.rq == path.parent.parent.name, f"{path}: rq '{cfg.rq}' differs from its folder"
        key = (cfg.rq, cfg.name)
        assert key not in seen, f"{path} and {seen[key]} write the same results folder"
        seen[key] = path


@pytest.mark.parametrize("override", ["name=..", "name=.", "name=a/b", "rq=../../../../outside", "rq=", "name=a\\b"])
def test_run_folder_names_cannot_leave_the_output_root(tmp_path, override):
    """rq and name are one folder level each under output_root: '..', '/', '\\' and empty are refused at load,
    naming the key (issue 13, item 3)."""
    run = write(tmp_path, "r.yaml", "rq: rqx\n")
    with pytest.raises((ConfigError, ValueError)) as e:
        load_config(run, [override], profile="tiny")
    assert f"key '{override.split('=')[0]}': must be a non-empty folder name" in str(e.value)


def test_run_dir_refuses_a_symlink_out_of_the_output_root(tmp_path):
    from experiments.run_folder import run_dir

    root, outside = tmp_path / "results", tmp_path / "elsewhere"
    (root).mkdir()
    outside.mkdir()
    (root / "rqx").symlink_to(outside)
    cfg = load_config(write(tmp_path, "r.yaml", "rq: rqx\nname: part\n"), [f"output_root={root}"], profile="tiny")
    with pytest.raises(ValueError, match="is not inside output_root"):
        run_dir(cfg)
    (root / "rqx").unlink()
    assert run_dir(cfg) == root / "rqx" / "part"


def _numeric_fields():
    """(dataclass, field name, annotation) of every int / float field (or tuple of them) reachable from
    RunConfig."""
    import dataclasses
    import typing

    from experiments.config.schema import RunConfig

    seen, out, todo = set(), [], [RunConfig]
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            args = [a for a in typing.get_args(tp) if a is not Ellipsis]
            inner = [tp] + args + [b for a in args for b in typing.get_args(a)]
            todo += [a for a in inner if dataclasses.is_dataclass(a)]
            if tp in (int, float) or (typing.get_origin(tp) is tuple and args and all(a in (int, float) for a in args)):
                out.append((cls, f.name, tp))
    return out


PREFIX = {"RunConfig": "", "PretrainConfig": "pretrain.", "OptimConfig": "pretrain.optim.", "MEPConfig": "pretrain.mep.",
          "CPPConfig": "pretrain.cpp.", "NegativesConfig": "pretrain.negatives.", "RuntimeConfig": "runtime.",
          "DataConfig": "data.", "VideoConfig": "data.video.", "AudioConfig": "data.audio.", "AVBertConfig": "model.",
          "TransformerConfig": "model.transformer.", "VisualCNNConfig": "model.visual_cnn.",
          "AudioCNNConfig": "model.audio_cnn."}


def test_every_numeric_field_has_a_range_and_out_of_range_values_fail_at_load(tmp_path):
    """Issue 13, item 2: each int / float field of the schema declares its range, and a value outside
    it fails at load naming the file, the key, the value and the range (downstream entries included)."""
    import typing

    from experiments.config.loader import range_text

    fields = _numeric_fields()
    assert len(fields) > 60
    missing = [f"{c.__name__}.{n}" for c, n, _ in fields if n not in getattr(c, "RANGES", {})]
    assert not missing, f"numeric fields without a declared range: {missing}"
    run = write(tmp_path, "r.yaml", "rq: rqx\ndownstream: [{name: av, task: ks_like}]\n")
    for cls, name, tp in fields:
        lo, hi, lo_open, _ = (*cls.RANGES[name], False, False)[:4]
        is_int = tp is int or all(a is int for a in typing.get_args(tp) if a is not Ellipsis)
        bad = (hi + 1) if hi is not None else (lo - 1 if not lo_open else lo)
        bad = int(bad) if is_int else float(bad)
        value = [bad] * len(typing.get_args(tp)) if typing.get_origin(tp) is tuple and Ellipsis not in typing.get_args(tp) \
            else ([bad] if typing.get_origin(tp) is tuple else bad)
        if cls.__name__ == "EvalConfig":
            text = f"rq: rqx\ndownstream: [{{name: av, task: ks_like, {name}: {value}}}]\n"
            key = f"downstream[0].{name}"
            run = write(tmp_path, "r.yaml", text)
            overrides = []
        else:
            key = PREFIX[cls.__name__] + name
            overrides = [f"{key}={value}"]
            run = write(tmp_path, "r.yaml", "rq: rqx\n")
        with pytest.raises(ConfigError) as e:
            load_config(run, overrides, profile="tiny")
        msg = str(e.value)
        assert f"'{key}'" in msg and f"must be {range_text(cls.RANGES[name])}" in msg and str(run) in msg, msg


def test_profile_override_selects_the_profile(tmp_path):
    """`profile=smoke` as an override loads the smoke profile's values (not only its label); given
    twice with different values it is refused (issue 13, item 7)."""
    run = write(tmp_path, "r.yaml", "rq: rqx\n")
    cfg = load_config(run, ["profile=smoke"])
    assert cfg.profile == "smoke" and cfg.data.root == load_config(run, [], profile="smoke").data.root
    assert cfg.pretrain.steps_per_epoch == load_config(run, [], profile="smoke").pretrain.steps_per_epoch
    assert cfg.pretrain.steps_per_epoch != load_config(run, [], profile="tiny").pretrain.steps_per_epoch
    with pytest.raises(ConfigError, match="profile given twice"):
        load_config(run, ["profile=smoke"], profile="tiny")


def test_print_config_names_the_layer_of_every_value(tmp_path, capsys):
    """`run.py --print-config` / `launch.py --print-config`: the resolved config, one line per value, each
    with where it came from (schema default, profile, RQ delta, run file, its by_profile, override)."""
    from experiments import launcher, run
    from experiments.config import explain_config

    lines = dict(ln.split(": ", 1) for ln in explain_config(
        "experiments/rq1_end_to_end/configs/no_pretrain.yaml", ["pretrain.optim.lr=3e-4"], "tiny").splitlines())
    assert lines["pretrain.optim.lr"] == "0.0003  # override"
    assert lines["pretrain.enabled"] == "false  # run experiments/rq1_end_to_end/configs/no_pretrain.yaml"
    assert lines["model.transformer.layers"] == "2  # profile experiments/profiles/tiny.yaml"
    assert lines["model.transformer.ln_eps"].endswith("# default (schema.py)")
    assert lines["downstream[6]"].startswith("{") and "name: av_hand" in lines["downstream[6]"]
    assert lines["downstream[6]"].endswith("# run experiments/rq1_end_to_end/configs/no_pretrain.yaml by_profile.tiny")
    rq2 = dict(ln.split(": ", 1) for ln in explain_config("experiments/rq2_fusion/configs/mid.yaml", [], "tiny").splitlines())
    assert any(v.endswith("# RQ delta experiments/rq2_fusion/configs/_tiny.yaml") for v in rq2.values())

    assert run.main(["--config", "experiments/rq3_sharing/configs/part.yaml", "--print-config", "seed=3",
                     f"output_root={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert "seed: 3  # override" in out and not (tmp_path / "rq3_sharing").exists()  # nothing ran
    summary = launcher.launch("experiments/rq3_sharing", ["--print-config", "--only", "part", "--seeds", "2",
                                                          f"output_root={tmp_path}"], out=(buf := io.StringIO()))
    assert summary.exit_code == 0 and not summary.outcomes
    assert "# part_seed2 (part.yaml, profile tiny)" in buf.getvalue() and "name: part_seed2  # override" in buf.getvalue()


def test_hand_run_configs_outside_the_sweeps_load():
    """Configs run by hand (not under configs/, so no launcher picks them up) validate too."""
    scratch = load_config("experiments/rq1_end_to_end/supervised/scratch.yaml", profile="tiny")
    assert (scratch.rq, scratch.name, scratch.pretrain.enabled) == ("supervised", "scratch", False)
    assert [(e.name, e.protocol, e.init) for e in scratch.downstream] == [("av", "finetune", "random"),
                                                                          ("bind", "finetune", "random")]
