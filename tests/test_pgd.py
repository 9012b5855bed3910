"""PGD: stronger than or equal to torchattacks at equal budget; budgets respected; deterministic."""

import pytest
import torch
import torchattacks

from robench.threats import BatchContext, create_threat


def _ctx(seed=0, batch_size=256):
    return BatchContext(generator=torch.Generator().manual_seed(seed), batch_size=batch_size)


def _torchattacks(model, norm, eps, step, steps, random_start):
    cls = torchattacks.PGD if norm == "linf" else torchattacks.PGDL2
    return cls(model, eps=eps, alpha=step, steps=steps, random_start=random_start)


def _clean(model, x, y):
    with torch.inference_mode():
        return model(x).argmax(1) == y


@pytest.mark.parametrize("norm, eps, steps, step", [("linf", 0.1, 20, 0.01), ("l2", 1.0, 20, 0.1)])
def test_dominates_torchattacks_from_the_same_start(
    standard_model, mnist_test, norm, eps, steps, step, monkeypatch
):
    """From the same (clean) start both follow the same ascent; ours also checks every iterate, so every
    example torchattacks breaks, ours breaks too."""
    x, y = mnist_test
    threat = create_threat(f"pgd_{norm}", "mnist5k", eps=eps, steps=steps, step_size=step)
    monkeypatch.setattr(threat, "random_start", lambda x, generator: x.clone())
    clean = _clean(standard_model, x, y)
    ours = threat.run_batch(standard_model, x, y, clean, _ctx())["robust"]
    x_adv = _torchattacks(standard_model, norm, eps, step, steps, random_start=False)(x, y)
    theirs = _clean(standard_model, x_adv, y) & clean
    assert 0 < int(theirs.sum()) < int(clean.sum())  # a budget that separates examples
    assert not (ours & ~theirs).any(), "an example torchattacks breaks survived our PGD"


def test_random_start_at_least_as_strong_as_torchattacks(standard_model, mnist_test):
    x, y = mnist_test
    threat = create_threat("pgd_linf", "mnist5k", eps=0.1, steps=20, step_size=0.01)
    clean = _clean(standard_model, x, y)
    ours = threat.run_batch(standard_model, x, y, clean, _ctx())["robust"]
    torch.manual_seed(0)
    theirs = (
        _clean(standard_model, _torchattacks(standard_model, "linf", 0.1, 0.01, 20, True)(x, y), y) & clean
    )
    assert 0 < int(theirs.sum()) < int(clean.sum())
    assert int(ours.sum()) <= int(theirs.sum()), (int(ours.sum()), int(theirs.sum()))


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_iterates_stay_in_ball_and_box(mnist_test, norm):
    x, _ = mnist_test
    threat = create_threat(f"pgd_{norm}", "mnist5k")
    g = torch.Generator().manual_seed(1)
    x_adv = threat.random_start(x, g)
    for _ in range(3):
        x_adv = threat.step(x_adv, x, torch.randn(x.shape, generator=g))
        delta = (x_adv - x).flatten(1)
        size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
        assert float(size.max()) <= threat.eps + 1e-5
        assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1


def test_same_seed_same_verdicts_and_misclassified_never_robust(standard_model, mnist_test):
    x, y = mnist_test
    threat = create_threat("pgd_linf", "mnist5k", eps=0.1, steps=10, step_size=0.02)
    clean = torch.ones_like(y, dtype=torch.bool)
    clean[:20] = False  # pretend these were misclassified: they must not be attacked nor robust
    a = threat.run_batch(standard_model, x, y, clean, _ctx(3))
    b = threat.run_batch(standard_model, x, y, clean, _ctx(3))
    assert torch.equal(a["robust"], b["robust"]) and torch.equal(a["fooled_at"], b["fooled_at"])
    assert not a["robust"][:20].any() and (a["fooled_at"][:20] == -1).all()


def test_restarts_only_lower_robustness(standard_model, mnist_test):
    x, y = mnist_test
    clean = torch.ones_like(y, dtype=torch.bool)
    one = create_threat("pgd_linf", "mnist5k", eps=0.08, steps=5, step_size=0.02)
    three = create_threat("pgd_linf", "mnist5k", eps=0.08, steps=5, step_size=0.02, restarts=3)
    r1 = one.run_batch(standard_model, x, y, clean, _ctx(5))["robust"]
    r3 = three.run_batch(standard_model, x, y, clean, _ctx(5))["robust"]
    assert not (r3 & ~r1).any()  # the first restart draws the same start, later ones can only break more
