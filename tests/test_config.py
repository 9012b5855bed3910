import pytest

from robench import config
from robench.errors import UsageError
from robench.threats import create_threat, list_threats


def test_fractions_and_overrides():
    assert config.parse_number("8/255") == pytest.approx(8 / 255)
    assert config.parse_overrides(["eps=8/255", "steps=7", "align_corners=true", "name=x"]) == {
        "eps": pytest.approx(8 / 255), "steps": 7, "align_corners": True, "name": "x"}


@pytest.mark.parametrize("bad", ["eps", "=3", "eps:3", "a b=1"])
def test_malformed_set_is_a_usage_error(bad):
    with pytest.raises(UsageError, match="malformed --set"):
        config.parse_overrides([bad])


def test_per_dataset_budgets_follow_protocols():
    assert create_threat("pgd_linf", "mnist5k").config() == {
        "norm": "linf", "eps": 0.3, "steps": 100, "step_size": 0.01, "restarts": 1}
    cifar = create_threat("pgd_linf", "cifar10")
    assert cifar.eps == pytest.approx(8 / 255) and cifar.steps == 20 and cifar.step_size == pytest.approx(2 / 255)
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
            # the recorded config is exactly what the YAML resolves to: boards rely on this to spot stale records
            assert create_threat(name, dataset).config() == config.threat_config(name, dataset), name


def test_threat_config_is_torch_free():
    import subprocess
    import sys

    code = "import sys, robench.config as c; c.threat_config('pgd_linf', 'mnist5k'); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
