"""Training recipes and perturbations: recipes validate, every perturbation stays in [0,1] and in its
budget, a short training run writes a loadable, pinned card, and the same seed gives the same weights."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from robench.cli import build_parser, main
from robench.core import config
from robench.core.errors import UsageError
from robench.datasets import load_tensors
from robench.models import create_model, load_card, load_card_file, sha256_file
from robench.models.affine import affine_thetas, warp
from robench.training.augmentations import RandomAffine, create_perturbation, ramp
from robench.training.train import Recipe, accuracy, train

ROOT = Path(__file__).resolve().parent.parent
ZOO = sorted(p.stem for p in (ROOT / "configs" / "models").glob("mnist_*.yaml"))


def _digits(n=16):
    """The first ``n`` real test digits."""
    return load_tensors("mnist5k", "test", n)


@pytest.fixture
def model(standard_model):
    return standard_model


@pytest.fixture
def recipe_dir(tmp_path, monkeypatch):
    """A user configs folder, searched after the shipped recipes, to which a test may add broken ones."""
    (tmp_path / "recipes").mkdir()
    monkeypatch.setenv("ROBENCH_CONFIGS", str(tmp_path))
    return tmp_path / "recipes"


# -- recipes ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", config.names("recipes"))
def test_every_shipped_recipe_loads(name):
    recipe = Recipe.load(name)
    assert recipe.description and recipe.epochs >= 1
    recipe.perturber()


@pytest.mark.parametrize(
    "text, message",
    [
        ("base: standard\nmomentum: 0.9\n", "unknown key 'momentum'"),
        ("base: standard\nepoch: 3\n", "did you mean 'epochs'"),
        (
            "description: x\nepochs: 1\nbatch_size: 8\nlr: 0.1\nweight_decay: 0\n",
            "missing key 'perturbation'",
        ),
        ("base: standard\nepochs: 0\n", "epochs must be >= 1"),
        ("base: standard\nepochs: true\n", "epochs must be an integer, got True"),
        ("base: standard\nlr: .nan\n", "lr must be a finite number"),
        ("base: standard\nperturbation: rotate\n", "unknown training perturbation 'rotate'"),
        ("base: standard\nperturbation: shift\nparams: {max_shift: 4, fill: 0}\n", "unknown key 'fill'"),
        (
            "base: standard\nperturbation: worst_of_k\nparams: {max_rotation: 30, max_translation: 3}\n",
            "missing key 'k'",
        ),
        (
            "base: standard\nperturbation: pgd\n"
            "params: {norm: linf, eps: 3, steps: 1, step_size: 1, ramp_epochs: 1}\n",
            "exceeds the",
        ),
    ],
)
def test_bad_recipes_fail_with_one_line(recipe_dir, text, message):
    (recipe_dir / "bad.yaml").write_text(text)
    with pytest.raises(UsageError, match=message) as info:
        Recipe.load("bad")
    assert "\n" not in str(info.value) and "'bad'" in str(info.value)


def test_unknown_recipe_suggests_a_name():
    with pytest.raises(UsageError, match="did you mean 'crop4'"):
        Recipe.load("crop5")


# -- perturbations ------------------------------------------------------------------------------------
def test_shift_moves_content_by_the_drawn_integer_offsets():
    x, _ = _digits()
    x = F.pad(x[..., 4:-4, 4:-4], (4, 4, 4, 4))  # guarantee a 4-px blank border, so nothing leaves the frame
    pert = create_perturbation("shift", {"max_shift": 4})
    offsets = pert.offsets(len(x), torch.Generator().manual_seed(1))
    assert offsets.abs().max() <= 4 and offsets.abs().max() > 0
    out = pert(None, x, None, torch.Generator().manual_seed(1))
    for img, moved, (tx, ty) in zip(x, out, offsets.tolist(), strict=True):
        assert torch.equal(moved, torch.roll(img, (-ty, -tx), dims=(-2, -1)))  # out(p) = in(p + t)


def test_random_affine_draws_inside_its_box_and_keeps_pixels_in_range():
    pert = create_perturbation("random_affine", {"max_rotation": 30, "max_translation": 3})
    t = pert.draw(4000, torch.Generator().manual_seed(0))
    assert t[:, 0].abs().max() <= 30 and t[:, 1:].abs().max() <= 3
    assert t[:, 0].abs().max() > 29 and t[:, 1:].abs().max() > 2.9  # the whole box is used
    x, _ = _digits()
    out = pert(None, x, None, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert not torch.allclose(out, x)
    still = create_perturbation("random_affine", {"max_rotation": 0, "max_translation": 0})
    assert torch.allclose(still(None, x, None, torch.Generator()), x, atol=1e-5)  # float rounding of the grid


def test_worst_of_k_trains_on_the_highest_loss_candidate(model):
    x, y = _digits(32)
    pert = create_perturbation("worst_of_k", {"max_rotation": 30, "max_translation": 3, "k": 10})
    out = pert(model, x, y, torch.Generator().manual_seed(5))
    # replay the same draws and score every candidate independently
    t = RandomAffine(30, 3).draw(len(x) * 10, torch.Generator().manual_seed(5))
    candidates = warp(x.repeat_interleave(10, 0), affine_thetas(t, 28, 28)).view(len(x), 10, 1, 28, 28)
    with torch.no_grad():
        losses = torch.stack(
            [F.cross_entropy(model(candidates[:, j]), y, reduction="none") for j in range(10)], 1
        )
    best = candidates[torch.arange(len(x)), losses.argmax(1)]
    assert torch.allclose(out, best, atol=1e-6)
    with torch.no_grad():
        assert F.cross_entropy(model(out), y) > F.cross_entropy(model(candidates[:, 0]), y)


@pytest.mark.parametrize("norm, eps, step", [("linf", 0.3, 0.075), ("l2", 2.0, 0.5)])
def test_pgd_training_stays_in_the_ball_and_raises_the_loss(model, norm, eps, step):
    x, y = _digits(64)
    pert = create_perturbation(
        "pgd", {"norm": norm, "eps": eps, "steps": 10, "step_size": step, "ramp_epochs": 1}
    )
    out = pert(model, x, y, torch.Generator().manual_seed(0))
    delta = (out - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert out.min() >= 0 and out.max() <= 1
    assert size.max() <= eps + 1e-5 and size.max() > 0.9 * eps
    with torch.no_grad():
        assert accuracy(model, out, y) < accuracy(model, x, y) - 0.3


def test_ramp_scales_the_budget_with_the_epoch(model):
    assert [ramp(e, 4) for e in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    x, y = _digits(32)
    pert = create_perturbation(
        "pgd", {"norm": "linf", "eps": 0.3, "steps": 5, "step_size": 0.1, "ramp_epochs": 3}
    )
    out = pert(model, x, y, torch.Generator().manual_seed(0), epoch=0)
    assert (out - x).abs().max() <= 0.1 + 1e-6


def test_cusp_is_pgd_around_the_worst_transform_with_ramped_budgets(model):
    x, y = _digits(32)
    params = {
        "max_rotation": 30,
        "max_translation": 3,
        "k": 4,
        "norm": "linf",
        "eps": 0.3,
        "steps": 3,
        "step_size": 0.1,
        "ramp_epochs": 2,
    }
    pert = create_perturbation("cusp", params)
    out = pert(model, x, y, torch.Generator().manual_seed(3), epoch=0)
    warped = pert.spatial.worst(model, x, y, torch.Generator().manual_seed(3), scale=0.5)
    assert out.min() >= 0 and out.max() <= 1
    assert (out - warped).abs().max() <= 0.15 + 1e-6  # half of eps in the first of two ramp epochs
    assert not torch.allclose(warped, x, atol=1e-3)


# -- training -----------------------------------------------------------------------------------------
def test_one_epoch_writes_a_pinned_loadable_card_and_is_deterministic(tmp_path):
    """From the command line: the card names the command as typed, which parses back to the same run."""
    from robench.cli import main

    for i in (1, 2):
        argv = "train --recipe standard --arch mnist_mlp --name tiny_mlp --epochs 1 --seed 3 --out"
        assert main([*argv.split(), str(tmp_path / f"run{i}")]) == 0
    cards = [tmp_path / f"run{i}" / "tiny_mlp.yaml" for i in (1, 2)]
    weights = [c.parent / "tiny_mlp.safetensors" for c in cards]
    assert sha256_file(weights[0]) == sha256_file(weights[1])
    data = yaml.safe_load(cards[0].read_text())
    assert data["weights"]["sha256"] == sha256_file(weights[0])
    assert data["training"]["seed"] == 3 and data["training"]["epochs"] == 1
    model = create_model(load_card_file(cards[0]))
    x, y = load_tensors("mnist5k", "test")
    assert accuracy(model, x, y) == data["training"]["clean_acc_test"] > 0.8
    args = build_parser().parse_args(shlex.split(data["training"]["command"])[1:])
    assert (args.recipe, args.arch, args.name, args.seed, args.epochs, Path(args.out)) == (
        "standard",
        "mnist_mlp",
        "tiny_mlp",
        3,
        1,
        tmp_path / "run1",
    )
    different = train(
        "standard", "mnist_mlp", name="tiny_mlp", out=tmp_path / "run3", epochs=1, seed=4, progress=False
    )
    assert sha256_file(different.parent / "tiny_mlp.safetensors") != sha256_file(weights[0])


def test_cli_train_errors_are_one_line(tmp_path, capsys):
    assert (
        main(["train", "--recipe", "standard", "--arch", "mnist_mpl", "--name", "x", "--out", str(tmp_path)])
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown timm architecture 'mnist_mpl'" in err


@pytest.mark.parametrize("name", ZOO)
def test_zoo_cards_load_reproduce_their_clean_accuracy_and_name_their_retrain_command(name):
    card = load_card(name)
    if card.defense is not None:  # a vote around another zoo card's network: that card is checked itself
        trained = build_parser().parse_args(shlex.split(card.training["command"])[1:]).name
        assert trained in ZOO and load_card(trained).weights.sha256 == card.weights.sha256
        return
    x, y = load_tensors(card.training["dataset"], "test")  # the held-out split of what it trained on
    one_image = 1 / len(y)
    assert abs(accuracy(create_model(card), x, y) - card.training["clean_acc_test"]) <= one_image
    args = build_parser().parse_args(shlex.split(card.training["command"])[1:])
    assert (args.recipe, args.arch, args.name, args.seed, args.epochs) == (
        card.training["recipe"],
        card.arch,
        name,
        card.training["seed"],
        card.training["epochs"],
    )
    assert config.parse_overrides(args.arch_kwargs) == card.arch_kwargs
    Recipe.load(args.recipe)


@pytest.mark.slow
def test_a_zoo_entry_retrains_within_one_point(tmp_path):
    """Retrain mnist_cnn_aug30 with its card's command (about a minute on two cores)."""
    card = load_card("mnist_cnn_aug30")
    argv = shlex.split(card.training["command"])[1:]
    args = build_parser().parse_args(argv)
    args.out, args.card_dir = str(tmp_path), None
    assert args.func(args) == 0
    retrained = yaml.safe_load((tmp_path / "mnist_cnn_aug30.yaml").read_text())["training"]["clean_acc_test"]
    assert abs(retrained - card.training["clean_acc_test"]) <= 0.01
