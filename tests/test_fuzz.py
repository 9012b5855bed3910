"""Fuzzed configs (issue #14 item 5): whatever a stranger writes in a threat YAML, a ``--set`` value, a model
card, a board config or a recipe, robench builds a valid object or refuses with a one-line UsageError, and
never fails with another exception.

Hypothesis generates the inputs: values of every type at every key a config kind knows (so the deep
checks run, not only "unknown key"), plus unknown keys, YAML text and names with unicode and path
characters. Hand-written cases cover what a random search rarely hits: NaN/inf/negative budgets, zero-size
grids, huge numbers, wrong types, missing folders given as roots.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robench.core import config
from robench.core.errors import UsageError
from robench.threats import FAMILIES, create_threat

REPO = Path(__file__).resolve().parent.parent
FUZZ = settings(
    max_examples=int(os.environ.get("ROBENCH_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
DATASETS = ["mnist5k", "cifar10", "imagenet", "nosuch"]

# --- what strangers write --------------------------------------------------------------------------------

NASTY_NUMBERS = st.sampled_from(
    [
        0,
        -1,
        1,
        2**31,
        2**63,
        10**400,
        -(10**400),
        0.0,
        -0.0,
        -1e-9,
        1e308,
        1e-320,
        math.nan,
        math.inf,
        -math.inf,
        True,
        False,
    ]
)
NASTY_TEXT = st.sampled_from(
    [
        "",
        " ",
        "nan",
        "inf",
        "-inf",
        "1e999",
        "8/255",
        "0/0",
        "1/0",
        "-8/255",
        "../x",
        "a/b",
        "/etc/passwd",
        "x\ny",
        "ä",
        "名前",
        "\x00",
        "e" * 300,
        "[" * 200,
        "{}",
        "None",
        "true",
        "0x10",
        "1_000",
    ]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=30)
    | NASTY_NUMBERS
    | NASTY_TEXT
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8) | NASTY_TEXT, inner, max_size=4)
    ),
    max_leaves=12,
)


def mapping_over(keys: list[str]):
    """Mappings whose keys are mostly the known ``keys`` (so their checks run) and sometimes unknown."""
    key = st.sampled_from(keys) | st.text(max_size=10) if keys else st.text(max_size=10)
    return st.dictionaries(key, VALUES, max_size=len(keys) + 2)


def family_keys(family: str) -> list[str]:
    return [f.name for f in dataclasses.fields(FAMILIES.get(family)) if f.init]


def refused_in_one_line(error: BaseException) -> None:
    message = str(error)
    assert isinstance(error, UsageError), f"{type(error).__name__}: {message}"
    assert message and "\n" not in message, repr(message)


@contextlib.contextmanager
def configs(folder: str, files: dict[str, str | bytes]):
    """A copy of the shipped configs with ``files`` written into ``configs/<folder>/``, used as
    ROBENCH_CONFIGS for the block (hypothesis reruns the test body, so no pytest fixture here)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "configs"
        import shutil

        shutil.copytree(REPO / "configs", root)
        for name, text in files.items():
            path = root / folder / f"{name}.yaml"
            path.write_bytes(text if isinstance(text, bytes) else text.encode())
        old = os.environ.get("ROBENCH_CONFIGS")
        os.environ["ROBENCH_CONFIGS"] = str(root)
        try:
            yield root
        finally:
            if old is None:
                del os.environ["ROBENCH_CONFIGS"]
            else:
                os.environ["ROBENCH_CONFIGS"] = old


def outcome(build):
    """Call ``build``; an object or a one-line UsageError pass, anything else fails the test."""
    try:
        return build()
    except UsageError as e:
        refused_in_one_line(e)
    except Exception as e:  # noqa: BLE001  (the point: no other exception may escape)
        refused_in_one_line(e)


def dump(data) -> str:
    return yaml.safe_dump(data, allow_unicode=True)


# --- threats: YAML files and --set values --------------------------------------------------------------


@FUZZ
@given(
    family=st.sampled_from(sorted(FAMILIES.names())) | st.text(max_size=12),
    data=st.data(),
    dataset=st.sampled_from(DATASETS),
)
def test_any_threat_yaml_builds_or_is_refused(family, data, dataset):
    keys = family_keys(family) if family in FAMILIES.names() else []
    params = data.draw(mapping_over(keys))
    spec = {"family": family, "params": params}
    if data.draw(st.booleans()):
        spec["per_dataset"] = data.draw(
            st.dictionaries(
                st.sampled_from(["mnist", "cifar", "imagenet", "x"]), mapping_over(keys), max_size=2
            )
        )
    if data.draw(st.booleans()):
        spec[data.draw(st.text(max_size=8))] = data.draw(VALUES)
    with configs("threats", {"fuzzed": dump(spec)}):
        outcome(lambda: create_threat("fuzzed", dataset))


@FUZZ
@given(name=st.sampled_from(sorted(config.names("threats"))), data=st.data())
def test_any_set_value_builds_or_is_refused(name, data):
    family = config.threat_spec(name).family
    keys = family_keys(family)
    key = data.draw((st.sampled_from(keys) | st.text(max_size=10)) if keys else st.text(max_size=10))
    raw = data.draw(st.text(max_size=40) | NASTY_TEXT | st.builds(repr, VALUES))

    def build():
        overrides = config.parse_overrides([f"{key}={raw}"])
        return create_threat(name, "mnist5k", **overrides)

    outcome(build)


@FUZZ
@given(text=st.text(max_size=200) | st.binary(max_size=200))
def test_any_yaml_text_is_read_or_refused(text):
    with configs("threats", {"fuzzed": text}):
        outcome(lambda: create_threat("fuzzed"))


# --- model cards, boards, recipes ----------------------------------------------------------------------

CARD_KEYS = [
    f.name
    for f in dataclasses.fields(__import__("robench.models", fromlist=["ModelCard"]).ModelCard)
    if f.name not in ("name", "source")
]
NAMES = (
    st.text(max_size=20) | NASTY_TEXT | st.sampled_from(["m", "mnist_cnn_standard", ".hidden", "a..b", "-x"])
)


@FUZZ
@given(name=NAMES, data=st.data())
def test_any_model_card_builds_or_is_refused(name, data):
    from robench.models import card_from_dict

    card = data.draw(mapping_over(CARD_KEYS))
    if data.draw(st.booleans()):  # a nearly valid card, with some fields fuzzed
        base = yaml.safe_load((REPO / "configs" / "models" / "mnist_cnn_standard.yaml").read_text())
        card = {**base, **card}
    outcome(lambda: card_from_dict(name, card))


BOARD_KEYS = ["title", "dataset", "split", "n_examples", "seed", "require", "x", "y", "columns"]


@FUZZ
@given(
    name=NAMES.filter(
        lambda n: "/" not in n and "\x00" not in n and n not in ("", ".", "..") and len(n) < 100
    ),
    data=st.data(),
)
def test_any_board_config_builds_or_is_refused(name, data):
    from robench.boards import load_board

    base = yaml.safe_load((REPO / "configs" / "boards" / "mnist5k.yaml").read_text())
    board = data.draw(mapping_over(BOARD_KEYS))
    if data.draw(st.booleans()):
        board = {**base, **board}
    if data.draw(st.booleans()):
        board["x"] = data.draw(mapping_over(["threat", "label", "note"]))
        board["y"] = data.draw(mapping_over(["label", "note", "prefer"]))
    try:
        files = {name: dump(board)}
    except ValueError:  # a name the file system cannot hold
        return
    with configs("boards", files):
        outcome(lambda: load_board(name))


RECIPE_KEYS = ["description", "epochs", "batch_size", "lr", "weight_decay", "perturbation", "params", "base"]
PERTURBATIONS = ["none", "random_shift", "random_affine", "worst_of_k", "pgd", "cusp", "nosuch"]


@FUZZ
@given(data=st.data())
def test_any_recipe_builds_or_is_refused(data):
    from robench.training.train import Recipe

    recipe = data.draw(mapping_over(RECIPE_KEYS))
    if data.draw(st.booleans()):
        recipe = {"base": "standard", "perturbation": data.draw(st.sampled_from(PERTURBATIONS)), **recipe}
    if data.draw(st.booleans()):
        recipe["params"] = data.draw(
            mapping_over(
                [
                    "norm",
                    "eps",
                    "steps",
                    "step_size",
                    "ramp_epochs",
                    "k",
                    "max_rotation",
                    "max_translation",
                    "max_shift",
                    "beta",
                ]
            )
        )
    with configs("recipes", {"fuzzed": dump(recipe)}):
        outcome(lambda: Recipe.load("fuzzed"))


# --- hand-written cases --------------------------------------------------------------------------------

BAD_BUDGETS = [math.nan, math.inf, -math.inf, -0.1, 0, 10**400, "8/0", "lots", True, None, [0.3], {"eps": 1}]


@pytest.mark.parametrize(
    "threat,key",
    [
        ("pgd_linf", "eps"),
        ("pgd_l2", "eps"),
        ("pgd_linf", "step_size"),
        ("pgd_linf", "steps"),
        ("uap_linf", "eps"),
        ("autoattack_linf", "eps"),
        ("spatial_random", "n_samples"),
    ],
)
@pytest.mark.parametrize("value", BAD_BUDGETS, ids=repr)
def test_bad_budgets_are_refused_in_one_line(threat, key, value):
    with pytest.raises(UsageError) as error:
        create_threat(threat, "mnist5k", **{key: value})
    refused_in_one_line(error.value)


@pytest.mark.parametrize(
    "overrides",
    [
        {"n_rotations": 0},
        {"n_translations": 0},
        {"n_rotations": -3},
        {"max_rotation": -1},
        {"n_translations": 10**9},
        {"max_rotation": 10**400},
    ],
)
def test_empty_or_absurd_grids_are_refused(overrides):
    with pytest.raises(UsageError) as error:
        create_threat("spatial", "mnist5k", **overrides)
    refused_in_one_line(error.value)


@pytest.mark.parametrize("name", ["../evil", "a/b", "ä", "名前", ".hidden", "", "x\ny", "a..b", "con\x00"])
def test_path_and_unicode_characters_in_names_are_refused(name, tmp_path):
    from robench.core import record
    from robench.models import card_from_dict

    for check in (
        lambda: record.check_name("model", name),
        lambda: record.path_for(tmp_path, "mnist5k", name, "x"),
        lambda: card_from_dict(name, {}),
        lambda: create_threat(name),
    ):
        with pytest.raises(UsageError) as error:
            check()
        refused_in_one_line(error.value)


def test_missing_folders_as_roots_are_refused_in_one_line(tmp_path, capsys, monkeypatch):
    from robench import cli

    missing = tmp_path / "nowhere"
    for argv in (
        ["leaderboard", "--root", str(missing)],
        ["leaderboard", "--check", "--root", str(missing)],
        ["verify", "--all", "--root", str(missing)],
    ):
        code = cli.main(argv)
        err = capsys.readouterr().err.strip()
        assert code == 2 and "\n" not in err and str(missing) in err, (argv, code, err)
    assert not missing.exists()
    monkeypatch.setenv("ROBENCH_CONFIGS", str(missing))
    for argv in (["ls", "models"], ["leaderboard"], ["verify", "--all"]):
        code = cli.main(argv)
        err = capsys.readouterr().err.strip()
        assert code == 2 and "\n" not in err and str(missing) in err, (argv, code, err)


@pytest.mark.parametrize(
    "files",
    [
        {"a": "base: a\n"},
        {"a": "base: b\n", "b": "base: a\n"},
        {"a": "base: [standard]\n"},
        {"a": "base: nosuch\n"},
        {"a": "!!python/object:os.system {}\n"},
    ],
    ids=["self", "cycle", "list", "unknown", "python tag"],
)
def test_bad_inheritance_is_refused_in_one_line(files):
    from robench.training.train import Recipe

    with configs("recipes", files):
        with pytest.raises(UsageError) as error:
            Recipe.load("a")
    refused_in_one_line(error.value)
