import pytest

from robench.core import config
from robench.core.errors import UsageError
from robench.threats import create_threat, list_threats


def test_fractions_and_overrides():
    assert config.parse_number("8/255") == pytest.approx(8 / 255)
    assert config.parse_overrides(["eps=8/255", "steps=7", "align_corners=true", "name=x"]) == {
        "eps": pytest.approx(8 / 255),
        "steps": 7,
        "align_corners": True,
        "name": "x",
    }


@pytest.mark.parametrize("bad", ["eps", "=3", "eps:3", "a b=1"])
def test_malformed_set_is_a_usage_error(bad):
    with pytest.raises(UsageError, match="malformed --set"):
        config.parse_overrides([bad])


def test_per_dataset_budgets_follow_protocols():
    assert create_threat("pgd_linf", "mnist5k").config() == {
        "norm": "linf",
        "eps": 0.3,
        "steps": 100,
        "step_size": 0.01,
        "restarts": 1,
    }
    cifar = create_threat("pgd_linf", "cifar10")
    assert (
        cifar.eps == pytest.approx(8 / 255)
        and cifar.steps == 20
        and cifar.step_size == pytest.approx(2 / 255)
    )
    assert create_threat("pgd_l2", "imagenet").eps == 3.0
    assert create_threat("spatial", "imagenet").max_translation == 24
    assert len(create_threat("spatial", "mnist5k").transforms) == 775


def test_base_inheritance():
    rot = create_threat("spatial_rotation", "mnist5k")
    assert (rot.n_rotations, rot.n_translations, rot.max_translation) == (31, 1, 0)
    shift = create_threat("spatial_translation", "mnist5k")
    assert (shift.n_rotations, shift.n_translations, shift.max_translation) == (1, 5, 3)


def test_unknown_names_suggest():
    with pytest.raises(UsageError, match="did you mean 'pgd_linf'"):
        create_threat("pgd_lnf", "mnist5k")
    with pytest.raises(UsageError, match="did you mean 'eps'"):
        create_threat("pgd_linf", "mnist5k", epz=0.1)
    with pytest.raises(UsageError, match="dataset"):
        create_threat("pgd_linf", "mnist5kk")


@pytest.mark.parametrize("override", [{"eps": 0}, {"eps": -0.1}, {"eps": 2.0}, {"steps": 0}, {"norm": "l1"}])
def test_bad_budgets_are_refused(override):
    with pytest.raises(UsageError):
        create_threat("pgd_linf", "mnist5k", **override)


PUBLISHED = [  # (threat, parameter, {dataset: value}): the budgets docs/protocols.md cites
    ("pgd_linf", "eps", {"mnist5k": 0.3, "cifar10": 8 / 255, "imagenet": 4 / 255}),
    ("pgd_l2", "eps", {"mnist5k": 2.0, "cifar10": 0.5, "imagenet": 3.0}),
    ("autoattack_linf", "eps", {"mnist5k": 0.3, "cifar10": 8 / 255, "imagenet": 4 / 255}),
    ("autoattack_l2", "eps", {"mnist5k": 2.0, "cifar10": 0.5, "imagenet": 3.0}),
    ("spatial", "max_translation", {"mnist5k": 3.0, "cifar10": 3.0, "imagenet": 24.0}),
    ("spatial", "max_rotation", {"mnist5k": 30.0, "cifar10": 30.0, "imagenet": 30.0}),
    ("uap_linf", "eps", {"mnist5k": 0.3, "cifar10": 8 / 255, "imagenet": 10 / 255}),
    ("translation_sweep", "headline_magnitude", {"mnist5k": 4, "cifar10": 4, "imagenet": 16}),
]


@pytest.mark.parametrize("threat, key, budgets", PUBLISHED)
def test_per_dataset_budgets_are_the_published_ones(threat, key, budgets):
    for dataset, value in budgets.items():
        got = getattr(create_threat(threat, dataset), key)
        assert got == pytest.approx(value, rel=1e-12) and type(got) is type(value), (threat, dataset)


def test_the_grid_has_775_transforms_with_the_identity():
    grid = create_threat("spatial", "mnist5k")
    assert len(grid.transforms) == 31 * 5 * 5 and grid.identity is not None


def test_every_named_threat_resolves_on_every_budget_family():
    for name in list_threats():
        for dataset in ("mnist5k", "cifar10", "imagenet"):
            # the recorded config is what the YAML resolves to: boards rely on it to spot stale records
            assert create_threat(name, dataset).config() == config.threat_config(name, dataset), name


def test_threat_config_is_torch_free():
    import subprocess
    import sys

    code = (
        "import sys, robench.core.config as c; c.threat_config('pgd_linf', 'mnist5k'); "
        "print('torch' in sys.modules)"
    )
    assert (
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        == "False"
    )


# -- where configuration folders are found (#11) ---------------------------------------------------------
def _user_threat(folder, name, eps):
    (folder / "threats").mkdir(parents=True, exist_ok=True)
    text = f"base: pgd_linf\nper_dataset:\n  mnist: {{eps: {eps}}}\n"
    (folder / "threats" / f"{name}.yaml").write_text(text)


def test_user_folders_add_names_and_a_later_folder_wins(tmp_path, monkeypatch, capsys):
    import os

    env_a, env_b, cli = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    _user_threat(env_a, "mine", 0.1)
    _user_threat(env_b, "mine", 0.2)
    monkeypatch.setenv("ROBENCH_CONFIGS", os.pathsep.join([str(env_a), str(env_b)]))
    assert config.search_path() == [config.BUILTIN, env_a, env_b]
    assert "mine" in config.names("threats") and "pgd_linf" in config.names("threats")
    assert config.threat_config("mine", "mnist5k")["eps"] == 0.2  # base: resolves to the shipped file
    _user_threat(cli, "mine", 0.25)
    monkeypatch.setattr(config, "_cli_dirs", [])
    config.set_user_dirs([cli])
    assert config.threat_config("mine", "mnist5k")["eps"] == 0.25
    assert capsys.readouterr().err == ""  # no shipped file was shadowed


def test_shadowing_a_shipped_file_is_reported_once(tmp_path, monkeypatch, capsys):
    (tmp_path / "threats").mkdir()
    shadow = tmp_path / "threats" / "pgd_linf.yaml"
    shadow.write_text("family: pgd\nparams: {norm: linf, eps: 0.1, steps: 1}")
    monkeypatch.setenv("ROBENCH_CONFIGS", str(tmp_path))
    monkeypatch.setattr(config, "_reported", set())
    assert config.threat_config("pgd_linf", "mnist5k")["steps"] == 1
    config.threat_config("pgd_linf", "cifar10")
    err = capsys.readouterr().err.splitlines()
    assert err == [f"robench: {shadow} shadows the shipped threats/pgd_linf.yaml"]


def test_missing_user_folder_and_base_loops_are_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBENCH_CONFIGS", str(tmp_path / "nope"))
    with pytest.raises(UsageError, match=r"nope \(ROBENCH_CONFIGS\) does not exist"):
        config.names("threats")
    (tmp_path / "threats").mkdir()
    (tmp_path / "threats" / "loop.yaml").write_text("base: loop\n")
    monkeypatch.setenv("ROBENCH_CONFIGS", str(tmp_path))
    with pytest.raises(UsageError, match="inherits from itself"):
        config.threat_config("loop", "mnist5k")


def test_repo_root_is_the_nearest_checkout_from_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "leaderboards").mkdir()
    (tmp_path / "a" / "b").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a" / "b")
    assert config.repo_root() == tmp_path
    with pytest.raises(UsageError, match="pass --root"):
        config.repo_root(tmp_path.parent)
    with pytest.raises(UsageError, match="--config-dir"):
        config.checkout_configs(tmp_path)
    (tmp_path / "configs").mkdir()
    monkeypatch.setenv("ROBENCH_CONFIGS", str(tmp_path / "configs"))
    assert config.checkout_configs(tmp_path) == tmp_path / "configs"
    assert config.checkout_configs(config.BUILTIN.parent) == config.BUILTIN
