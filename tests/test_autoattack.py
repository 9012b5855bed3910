"""AutoAttack through pyautoattack: verdicts bounded by clean accuracy, seeded, its warnings kept as flags.

The model is a tiny linear classifier on 6x6 images. The fast tests use a budget at which APGD-CE breaks
every point, so AutoAttack skips its other attacks; the full standard version on survivors (APGD-T and
FAB-T over 9 targets, Square with 5000 queries) costs minutes of per-iteration overhead even here.
"""

import numpy as np
import pytest
import torch
from torch import nn

from robench.core.errors import UsageError
from robench.threats import BatchContext, create_threat
from robench.threats.autoattack import CHECKS, warning_bits


def _ctx(seed=0):
    return BatchContext(generator=torch.Generator().manual_seed(seed), batch_size=64)


def _problem(probabilities=False):
    """12 points of 10 well-separated classes; a fixed linear model that classifies most correctly."""
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 10))
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(10, 36, generator=g))
        model[1].bias.zero_()
    if probabilities:
        model.append(nn.Softmax(dim=1))
    model.eval().requires_grad_(False)
    x = torch.rand(12, 1, 6, 6, generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)
    y[:2] = (y[:2] + 1) % 10  # two misclassified examples: never attacked, never robust
    with torch.no_grad():
        clean = model(x).argmax(1) == y
    return model, x, y, clean


def _run(threat, model, x, y, clean, seed=0):
    out = threat.run_batch(model, x, y, clean, _ctx(seed))
    stats = {k: v.numpy() for k, v in out.items()} | {"clean_correct": clean.numpy()}
    return out, stats


def test_runs_seeded_within_clean_correct_and_budget_with_clean_stdout(capsys):
    model, x, y, clean = _problem()
    # at this budget APGD-CE breaks every point, so the other attacks are skipped
    threat = create_threat("autoattack_linf", "mnist5k", eps=0.5)
    rng = torch.get_rng_state()
    out, stats = _run(threat, model, x, y, clean, seed=3)
    assert torch.equal(torch.get_rng_state(), rng)  # AutoAttack's reseeding does not leak out
    assert capsys.readouterr().out == ""  # stdout stays clean for `robench eval --json`
    assert not out["robust"].any() and not (out["robust"] & ~clean).any()
    norms = stats["adversarial_norm"]
    assert (norms[clean.numpy()] <= 0.5 * (1 + 1e-5) + 1e-5).all() and np.isnan(norms[~clean.numpy()]).all()
    again, _ = _run(threat, model, x, y, clean, seed=3)
    assert np.array_equal(stats["adversarial_norm"], again["adversarial_norm"].numpy(), equal_nan=True)
    details = threat.summarize(stats)
    assert details["broken"] == int(clean.sum()) and details["rejected_out_of_budget"] == 0


@pytest.mark.slow  # minutes (5 on a busy 2-core machine): survivors go through all four attacks, twice
def test_survivors_face_every_attack_and_verdicts_are_seeded():
    model, x, y, clean = _problem()
    threat = create_threat("autoattack_linf", "mnist5k", eps=0.05)
    out, stats = _run(threat, model, x, y, clean, seed=3)
    broken = clean & ~out["robust"]
    assert 0 < int(broken.sum()) < int(clean.sum()) and not (out["robust"] & ~clean).any()
    again, _ = _run(threat, model, x, y, clean, seed=3)
    assert torch.equal(out["robust"], again["robust"])


def test_its_own_warnings_become_flags():
    model, x, y, clean = _problem(probabilities=True)  # AutoAttack checks for probability outputs
    threat = create_threat("autoattack_linf", "mnist5k", eps=0.5)
    _, stats = _run(threat, model, x, y, clean)
    flags = threat.flags(stats)
    assert any(f.startswith("autoattack_probability_output:") and "100.0%" in f for f in flags), flags
    plain_model, *_ = _problem()
    _, plain = _run(threat, plain_model, x, y, clean)
    assert not any(f.startswith("autoattack_probability_output") for f in threat.flags(plain))


def test_warning_messages_map_to_their_checks():
    names = [name for _, name, _ in CHECKS]
    assert warning_bits([]) == 0
    zero = warning_bits(["there are 3 points with zero gradient! This might ..."])
    assert zero == 1 << names.index("zero_gradients")
    both = warning_bits(
        [
            "it seems to be a randomized defense! Please use version='rand'.",
            "Square Attack has decreased the robust accuracy of 1.00%.",
        ]
    )
    assert both == (1 << names.index("randomized")) | (1 << names.index("square_stronger"))
    assert warning_bits(["something new"]) == 1 << len(CHECKS)


@pytest.mark.parametrize(
    "override, match",
    [
        ({"norm": "l1"}, "norm"),
        ({"eps": 0}, "eps"),
        ({"eps": 1.5}, "exceeds"),
        ({"version": "rand"}, "version"),
    ],
)
def test_bad_parameters_are_usage_errors(override, match):
    with pytest.raises(UsageError, match=match):
        create_threat("autoattack_linf", "mnist5k", **override)


def test_l2_runs_within_its_ball():
    model, x, y, clean = _problem()
    threat = create_threat("autoattack_l2", "mnist5k", eps=3.0)  # ℓ2 diameter of a 6x6 box is 6
    assert threat.norm == "l2"
    out, stats = _run(threat, model, x, y, clean, seed=1)
    broken = clean.numpy() & ~out["robust"].numpy()
    assert broken.any() and not (out["robust"] & ~clean).any()
    assert (stats["adversarial_norm"][broken] <= 3.0 * (1 + 1e-5) + 1e-5).all()  # measured in ℓ2, not ℓ∞


def test_points_outside_the_budget_are_not_counted_as_breaks(monkeypatch):
    """AutoAttack only reports its largest perturbation; robench re-checks every returned point."""
    import pyautoattack

    model, x, y, clean = _problem()
    with torch.no_grad():
        pred = model(x).argmax(1)

    class FarAway:  # returns, for each point, another image the model gives another label: far outside ε
        def __init__(self, *args, **kwargs):
            pass

        def run_standard_evaluation(self, xs, ys, batch_size):
            other = [int(torch.nonzero(pred != label)[0]) for label in ys]
            return x[other].clone(), ys

    monkeypatch.setattr(pyautoattack, "AutoAttack", FarAway)
    threat = create_threat("autoattack_linf", "mnist5k", eps=0.05)
    out, stats = _run(threat, model, x, y, clean)
    assert torch.equal(out["robust"], clean)  # misclassified, but not within the ball: still robust
    assert stats["out_of_budget"].sum() == int(clean.sum())
    assert threat.summarize(stats)["rejected_out_of_budget"] == int(clean.sum())
    assert any(f.startswith("autoattack_out_of_budget:") for f in threat.flags(stats))
