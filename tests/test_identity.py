"""A run's identity covers everything that decides a verdict (issue #20), and nothing else.

The identity (``RunSpec.identity``, hashed into ``config_hash``) keys the resumable chunks and the
record. If a field that changes verdicts were missing, a resumed run could mix two models in one record; if
a cosmetic field were in it, renaming a display name would orphan every result. So every field of a card
and of :class:`RunOptions` is mutated here, and the hash must change exactly for those not on the declared
lists (:data:`robench.core.record.COSMETIC_META`, :data:`robench.engine.spec.OUTSIDE_IDENTITY`).
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import yaml
from torch import nn
from torch.utils.data import TensorDataset

from robench.core import record as rec
from robench.core.config import BUILTIN
from robench.engine import RunOptions, evaluate, resolve, spec
from robench.engine.forward import Speed
from robench.models import Classifier, card_from_dict, create_model

CARD = yaml.safe_load((BUILTIN / "models" / "mnist_cnn_standard.yaml").read_text())


def test_the_cosmetic_list_is_what_it_says():
    """Adding a field here takes it out of every run's identity: it must be a deliberate change."""
    assert rec.COSMETIC_META == ("display_name", "description", "paper", "recipe", "spec")
    assert spec.OUTSIDE_IDENTITY == (
        "device",
        "data_dir",
        "workers",
        "allow_pickle",
        "weights",
        "normalization",
        "arch_kwargs",
        "out_dir",
        "shard",
        "progress",
    )


def _card_identity(data: dict, name: str = "m", **changes) -> str:
    card = dataclasses.replace(card_from_dict(name, data, source=BUILTIN / "models" / "x.yaml"), **changes)
    return rec.config_hash(
        rec.run_identity(**{**_PROTOCOL, "model": card.name}, model_identity=rec.model_identity(card.meta()))
    )


_PROTOCOL = dict(
    dataset="mnist5k",
    split="test",
    n=8,
    threat="clean",
    family="clean",
    config={},
    seed=0,
    batch_size=8,
    chunk_size=8,
)

#: One mutation per card field: (field, the YAML change or a dataclass change, changes the identity?)
CARD_MUTATIONS = [
    ("name", {}, {"name": "other"}, True),
    ("arch", {"arch": "mnist_mlp"}, {}, True),
    ("dataset", {"dataset": "mnist"}, {}, True),
    ("num_classes", {"num_classes": 9}, {}, True),
    ("weights.sha256", {"weights": {**CARD["weights"], "sha256": "1" * 64}}, {}, True),
    ("weights.pretrained", {"weights": {"pretrained": "tag"}}, {}, True),
    ("library", {"library": "torchvision"}, {}, True),
    ("arch_kwargs", {"arch_kwargs": {"width": 16}}, {}, True),
    ("normalization", {"normalization": "none"}, {}, True),
    ("normalization.std", {"normalization": {"mean": [0.1307], "std": [0.3]}}, {}, True),
    ("display_name", {"display_name": "x"}, {}, False),
    ("description", {"description": "x"}, {}, False),
    ("paper", {"paper": {"title": "x"}}, {}, False),
    ("training", {"training": {"recipe": "x"}}, {}, False),
    ("claimed", {"claimed": {"clean": 0.99}}, {}, False),
    ("spec", {}, {"spec": "path/to/card.yaml"}, False),
    # a test-time vote is part of the model: another vote, another model
    ("defense", {"defense": {"vote": 10, "rotation": 30, "translation": 3}}, {}, True),
    # a pin is checked against the code found; the found code's own hash is what enters the identity
    ("code", {"code": {"sha256": "1" * 64}}, {}, False),
    # where the pinned bytes are found, not what they are: the sha256 above is their identity
    ("source", {}, {"source": BUILTIN / "elsewhere" / "x.yaml"}, False),
    ("weights.path", {"weights": {**CARD["weights"], "path": "/elsewhere/w.safetensors"}}, {}, False),
]


def test_every_card_field_is_covered_by_a_mutation():
    from robench.models import ModelCard, WeightsSpec

    fields = {f.name for f in dataclasses.fields(ModelCard)} - {"weights", "preprocessing"}
    fields |= {f"weights.{f.name}" for f in dataclasses.fields(WeightsSpec)} - {
        "weights.url",
        "weights.format",
    }
    covered = {m[0].split(".")[0] if m[0].startswith("normalization") else m[0] for m in CARD_MUTATIONS}
    # preprocessing is ImageNet-only (tested below), url/format are locators like path
    assert fields <= covered, fields - covered


@pytest.mark.parametrize(("field", "yaml_change", "change", "decides"), CARD_MUTATIONS, ids=lambda v: str(v))
def test_a_card_field_changes_the_identity_unless_cosmetic(field, yaml_change, change, decides):
    base = _card_identity(CARD)
    mutated = _card_identity({**CARD, **yaml_change}, **change)
    assert (mutated != base) == decides, f"{field}: identity {'unchanged' if decides else 'changed'}"


def test_imagenet_preprocessing_is_in_the_identity():
    card = {
        "arch": "resnet18",
        "dataset": "imagenet",
        "num_classes": 1000,
        "normalization": "imagenet",
        "weights": {"path": "w.safetensors", "sha256": "0" * 64},
    }
    other = {**card, "preprocessing": {"resize": 232, "crop": 224}}
    assert _card_identity(card) != _card_identity(other)


# --- RunOptions ------------------------------------------------------------------------------------------


@pytest.fixture()
def tiny(monkeypatch):
    """Any dataset resolves to 12 fixed images, so dataset and split can change without data on disk."""
    data = TensorDataset(torch.rand(12, 1, 28, 28), torch.arange(12) % 10)
    monkeypatch.setattr(
        spec,
        "first_examples",
        lambda name, split, n, data_dir, **kw: torch.utils.data.Subset(data, range(n or 12)),
    )
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))


def _options(tmp_path, **changes) -> RunOptions:
    subset = tmp_path / "subset.txt"
    subset.write_text("a\n") if not subset.exists() else None
    return RunOptions(
        **{
            "dataset": "mnist5k",
            "n_examples": 8,
            "batch_size": 4,
            "chunk_size": 4,
            "device": "cpu",
            **changes,
        }
    )


def _mutations(tmp_path):
    other = tmp_path / "other.txt"
    other.write_text("b\n")
    out = tmp_path / "out"
    return {
        "dataset": "mnist",
        "split": "train",
        "n_examples": 9,
        "batch_size": 2,
        "chunk_size": 2,
        "seed": 1,
        "overrides": {"steps": 3},
        "subset_file": other,
        "speed": Speed("bf16"),
        "model_name": "renamed",
        "device": None,
        "data_dir": str(tmp_path),
        "workers": 2,
        "allow_pickle": True,
        "weights": str(other),
        "normalization": "none",
        "arch_kwargs": {"width": 3},
        "out_dir": out,
        "shard": (0, 2),
        "progress": False,
    }


def test_every_option_changes_the_identity_unless_declared_outside(tiny, tmp_path):
    """PGD: the one family whose fast path changes its search, so ``speed`` is in its identity."""
    mutations = _mutations(tmp_path)
    assert set(mutations) == {f.name for f in dataclasses.fields(RunOptions)}
    base = resolve(tiny, "pgd_linf", _options(tmp_path)).config_hash
    for field, value in mutations.items():
        changes = {field: value, **({"out_dir": tmp_path / "out"} if field == "shard" else {})}
        changed = resolve(tiny, "pgd_linf", _options(tmp_path, **changes)).config_hash != base
        assert changed == (field not in spec.OUTSIDE_IDENTITY), field


def test_the_fast_path_of_an_argmax_family_keeps_the_identity(tiny, tmp_path):
    """Its verdicts are fp32's (re-checked), so its records are the fp32 records."""
    plain = resolve(tiny, "clean", _options(tmp_path)).config_hash
    assert resolve(tiny, "clean", _options(tmp_path, speed=Speed("bf16", True))).config_hash == plain


# --- in-memory modules ---------------------------------------------------------------------------------


def _bare(name: str) -> Classifier:
    """A zoo network as an in-memory module without a card (what a Python user hands evaluate)."""
    model = create_model(name)
    return Classifier(model.net, model.mean.flatten().tolist(), model.std.flatten().tolist())


def test_two_modules_of_one_class_never_share_an_identity_or_a_folder(tiny, tmp_path):
    a, b = _bare("mnist_cnn_standard"), _bare("mnist_cnn_pgd_linf")
    spec_a, spec_b = (resolve(m, "clean", _options(tmp_path, out_dir=tmp_path)) for m in (a, b))
    assert spec_a.model_name != spec_b.model_name and spec_a.model_name.startswith("Classifier-")
    assert spec_a.record_path().parent != spec_b.record_path().parent
    assert spec_a.config_hash != spec_b.config_hash
    assert resolve(_bare("mnist_cnn_standard"), "clean", _options(tmp_path)).config_hash == spec_a.config_hash
    meta = spec_a.model.meta
    assert meta["class"] == "robench.models.factory.Classifier" and len(meta["fingerprint"]) == 64
    assert meta["normalization"] == {"mean": [pytest.approx(0.1307)], "std": [pytest.approx(0.3081)]}


# --- the two cases of the issue, end to end ------------------------------------------------------------


def test_a_normalization_corrected_between_interrupted_runs_is_recomputed(tmp_path, capsys, monkeypatch):
    """A shard of the run with the wrong normalisation, then the corrected card: the record is the
    corrected model's, equal to an uninterrupted run, and one line says what changed."""
    configs = tmp_path / "configs" / "models"
    configs.mkdir(parents=True)
    monkeypatch.setenv("ROBENCH_CONFIGS", str(configs.parent))
    weights = (BUILTIN / "weights" / "mnist_cnn_standard.safetensors").resolve()
    card = {**CARD, "weights": {**CARD["weights"], "path": str(weights)}, "normalization": "none"}
    (configs / "mine.yaml").write_text(yaml.safe_dump(card))
    kw = dict(n_examples=40, chunk_size=20, progress=False)
    evaluate("mine", "clean", out_dir=tmp_path / "runs", shard=(0, 2), **kw)
    card["normalization"] = CARD["normalization"]
    (configs / "mine.yaml").write_text(yaml.safe_dump(card))
    capsys.readouterr()
    resumed = evaluate("mine", "clean", out_dir=tmp_path / "runs", **kw)
    assert "the run changed" in capsys.readouterr().err
    fresh = evaluate("mine", "clean", out_dir=tmp_path / "fresh", **kw)
    assert resumed.per_example == fresh.per_example and resumed.config_hash == fresh.config_hash
    assert resumed.model_meta["normalization"] == {"mean": [0.1307], "std": [0.3081]}
    assert not list((tmp_path / "runs").rglob("chunk-*.npz"))  # the stale chunks are gone too


def test_two_modules_of_one_class_into_one_out_dir_give_each_its_own_record(tmp_path):
    kw = dict(dataset="mnist", n_examples=40, chunk_size=20, progress=False)  # a module names its dataset
    a, b = _bare("mnist_cnn_standard"), _bare("mnist_cnn_pgd_linf")
    evaluate(a, "pgd_linf", out_dir=tmp_path / "runs", shard=(0, 2), **kw)
    second = evaluate(b, "pgd_linf", out_dir=tmp_path / "runs", **kw)
    alone = evaluate(_bare("mnist_cnn_pgd_linf"), "pgd_linf", out_dir=tmp_path / "alone", **kw)
    assert second.per_example == alone.per_example and second.robust_acc == alone.robust_acc
    assert second.model != evaluate(a, "clean", **kw).model
    saved = json.loads(rec.path_for(tmp_path / "runs", "mnist", second.model, "pgd_linf").read_text())
    assert saved["model_meta"]["fingerprint"] == second.model_meta["fingerprint"]
