"""Test-time aggregation (robench.models.vote) and EOT (robench.threats.ops.eot): the vote is the majority
a hand loop gives, its draws depend on the image and the seed only, a card's defense is part of the model's
identity, gradient attacks draw the samples they say, and records flag the randomised model."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import yaml

import robench
from robench import cli
from robench.core import record as rec
from robench.core.config import BUILTIN
from robench.core.errors import UsageError
from robench.models import card_from_dict, create_model
from robench.models.affine import affine_thetas, warp
from robench.models.card import Defense
from robench.models.vote import Vote
from robench.threats import create_threat
from robench.threats.ops.eot import EOT

CARD = yaml.safe_load((BUILTIN / "models" / "mnist_cnn_worst_of_10_vote.yaml").read_text())


def _vote(model, k=5, seed=0):
    return Vote(model, Defense(vote=k, rotation=30, translation=3, seed=seed)).eval()


def test_the_vote_is_the_majority_of_a_hand_loop_over_its_draws(standard_model, batch):
    x, _, _ = batch
    x = x[:24]
    vote = _vote(standard_model, k=4)  # an even k, so that ties occur and the tie-break is exercised
    draws = vote.transforms_for(x)
    assert draws.shape == (24, 4, 3) and (draws.abs() <= torch.tensor([30, 3, 3])).all()
    expected = []
    with torch.inference_mode():
        for i in range(len(x)):
            counts, summed = torch.zeros(10), torch.zeros(10)
            for j in range(4):
                logits = standard_model(warp(x[i : i + 1], affine_thetas(draws[i, j : j + 1], 28, 28)))[0]
                counts[logits.argmax()] += 1
                summed += logits.softmax(0)
            top = (counts == counts.max()).nonzero().flatten()
            expected.append(int(top[summed[top].argmax()]))
        out = vote(x)
    assert out.argmax(1).tolist() == expected
    assert torch.allclose(out.sum(1), torch.ones(24))  # (votes + mean softmax) / (k + 1)


def test_draws_depend_on_the_image_and_the_seed_only(standard_model, batch):
    x, _, _ = batch
    vote = _vote(standard_model)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        whole = vote(x)
        pieces = torch.cat([vote(part) for part in x[perm].split(7)])  # another order, other batch sizes
    assert torch.equal(pieces.argmax(1), whole[perm].argmax(1))
    assert torch.equal(vote.transforms_for(x[perm]), vote.transforms_for(x)[perm])
    nudged = x[:1].clone()
    nudged[0, 0, 14, 14] += 2 / 255  # another 8-bit image: another draw
    assert not torch.equal(vote.transforms_for(nudged), vote.transforms_for(x[:1]))
    assert not torch.equal(_vote(standard_model, seed=1).transforms_for(x), vote.transforms_for(x))


def test_the_card_wraps_its_network_and_the_vote_is_in_the_identity():
    model = create_model("mnist_cnn_worst_of_10_vote")
    assert isinstance(model, Vote) and model.k == 10 and model.card.name == "mnist_cnn_worst_of_10_vote"
    meta = model.card.meta()
    assert meta["randomised"] is True
    assert meta["defense"] == {"vote": 10, "rotation": 30.0, "translation": 3.0, "seed": 0}
    plain = create_model("mnist_cnn_worst_of_10")
    same = model.model.state_dict(), plain.state_dict()
    assert same[0].keys() == same[1].keys() and all(torch.equal(same[0][k], same[1][k]) for k in same[0])

    def identity(**defense):
        card = card_from_dict("m", {**CARD, "defense": {**CARD["defense"], **defense}}, source=BUILTIN / "x")
        return rec.config_hash(rec.model_identity(card.meta()))

    assert len({identity(), identity(vote=5), identity(seed=1), identity(rotation=15)}) == 4


@pytest.mark.parametrize(
    ("defense", "message"),
    [
        ({"vote": 10, "rotaton": 30, "translation": 3}, "unknown key 'rotaton'"),
        ({"vote": 0, "rotation": 30, "translation": 3}, "vote must be a number of transforms >= 1"),
        ({"vote": 10, "rotation": 200, "translation": 3}, "rotation must be in [0, 180]"),
        ({"vote": 10, "translation": 3}, "missing key 'rotation'"),
        ({"vote": True, "rotation": 30, "translation": 3}, "vote"),
    ],
)
def test_a_bad_defense_is_one_line_naming_the_card(defense, message):
    with pytest.raises(UsageError) as e:
        card_from_dict("mine", {**CARD, "defense": defense}, source=BUILTIN / "models" / "mine.yaml")
    assert str(e.value).startswith("model card 'mine': ") and message in str(e.value)
    assert "\n" not in str(e.value)


def test_the_cli_refuses_a_bad_defense_in_one_line(tmp_path, capsys):
    card = {**CARD, "weights": {**CARD["weights"], "path": str(BUILTIN / "weights" / "x.safetensors")}}
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({**card, "defense": {"vote": 10, "rotation": 30, "shift": 3}}))
    assert cli.main(["eval", "--model", str(path), "--threat", "clean", "--runs", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown key 'shift'" in err


class _Rows(torch.nn.Module):
    """The wrapped network, counting the rows it classifies with gradients on."""

    def __init__(self, model):
        super().__init__()
        self.model, self.grad_rows = model, 0

    def forward(self, x):
        if torch.is_grad_enabled() and x.requires_grad:
            self.grad_rows += len(x)
        return self.model(x)


def test_eot_draws_the_stated_number_of_samples(standard_model, batch, ctx, monkeypatch):
    x, y, clean = batch
    x, y, clean = x[:8], y[:8], clean[:8]
    counted = _Rows(standard_model)
    vote = _vote(counted, k=3)
    eot = EOT(vote, samples=4)
    draws = eot.draws(8, torch.Generator().manual_seed(0))
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(eot.loss(xg, y, draws), xg)
    assert draws.shape == (8, 4, 3) and counted.grad_rows == 8 * 4 and grad.abs().sum() > 0

    seen = []
    loss = EOT.loss
    monkeypatch.setattr(EOT, "loss", lambda self, x, y, d: seen.append(d.shape[1]) or loss(self, x, y, d))
    threat = create_threat("pgd_linf", "mnist5k", steps=3, eot_samples=4, eps=0.05, step_size=0.01)
    out = threat.run_batch(vote, x, y, clean, ctx())
    assert seen and set(seen) == {4}  # every gradient step averaged over 4 samples
    stats = {k: v.numpy() for k, v in out.items()} | {"clean_correct": clean.numpy()}
    assert threat.summarize(stats)["eot_samples_per_step"] == 4
    assert threat.config()["eot_samples"] == 4  # not the default: recorded in the config too


def test_a_deterministic_model_is_attacked_as_before(standard_model, batch, ctx):
    x, y, clean = batch
    threat = create_threat("pgd_linf", "mnist5k", steps=3)
    out = threat.run_batch(standard_model, x[:16], y[:16], clean[:16], ctx())
    assert "eot_samples" not in out and "eot_samples" not in threat.config()
    spatial = create_threat("spatial_pgd", "mnist5k", steps=2)
    assert "eot_samples" not in spatial.run_batch(standard_model, x[:16], y[:16], clean[:16], ctx())


def test_records_flag_the_randomised_model_and_reproduce_under_a_seed(tmp_path):
    card = {**CARD, "defense": {"vote": 3, "rotation": 30, "translation": 3}}
    card["weights"] = {
        **card["weights"],
        "path": str(BUILTIN / "weights" / "mnist_cnn_worst_of_10.safetensors"),
    }
    path = tmp_path / "voted.yaml"
    path.write_text(yaml.safe_dump(card))
    runs = dict(dataset="mnist5k", n_examples=24, progress=False)
    pgd = dict(overrides={"steps": 3, "eot_samples": 2})
    a = robench.evaluate(str(path), "pgd_linf", batch_size=8, **runs, **pgd)
    b = robench.evaluate(str(path), "pgd_linf", batch_size=8, **runs, **pgd)
    assert (a.per_example, a.details, a.config_hash) == (b.per_example, b.details, b.config_hash)
    assert a.details["eot_samples_per_step"] == 2
    assert any(f.startswith("randomised_model: classifies by the majority of 3") for f in a.flags)
    assert a.model_meta["randomised"] is True and a.model_meta["defense"]["vote"] == 3
    clean_8 = robench.evaluate(str(path), "clean", batch_size=8, **runs)
    clean_5 = robench.evaluate(str(path), "clean", batch_size=5, **runs)
    assert clean_8.clean_per_example == clean_5.clean_per_example  # batches do not move a vote


def test_an_in_memory_vote_has_its_defense_in_its_fingerprint(standard_model):
    from robench.engine.spec import module_fingerprint

    assert module_fingerprint(_vote(standard_model, k=3)) != module_fingerprint(_vote(standard_model, k=5))
    assert dataclasses.asdict(_vote(standard_model).defense)["seed"] == 0


def test_write_card_keeps_the_defense_of_a_vote(tmp_path, batch):
    """A Vote saved by write_card is the network's weights plus the defense block: the card rebuilds the
    defended model, not the bare network under the Vote's state-dict keys."""
    vote = create_model("mnist_cnn_worst_of_10_vote")
    norm = CARD["normalization"]
    path = robench.write_card(
        vote, tmp_path / "mine.yaml", arch="mnist_cnn", dataset="mnist", normalization=norm
    )
    card = yaml.safe_load(path.read_text())
    assert card["defense"] == {"vote": 10, "rotation": 30.0, "translation": 3.0, "seed": 0}
    again = create_model(str(path))
    assert isinstance(again, Vote)
    x = batch[0][:16]
    with torch.inference_mode():
        assert torch.equal(again(x), vote(x))
