"""mCE and relative mCE from two corruption records (robench/core/corruption_report.py, torch-free)."""

from __future__ import annotations

import dataclasses

import pytest

from robench.cli import main
from robench.core import record as rec
from robench.core.corruption_report import corruption_errors
from robench.core.errors import UsageError


def _record(model: str, clean_acc: float, acc: dict, **changes) -> rec.RunRecord:
    config = {"corruptions": sorted(acc), "severities": [1, 2], "robust_severity": 1}
    base = rec.RunRecord(
        model=model,
        dataset="mnist5k",
        threat="corruptions",
        family="corruptions",
        threat_config=config,
        config_hash="0",
        n_examples=10,
        clean_acc=clean_acc,
        robust_acc=0.0,
        per_example="0" * 10,
        clean_per_example="0" * 10,
        indices={"split": "test", "start": 0, "stop": 10},
        details={
            "accuracy_by_corruption_and_severity": acc,
            "mean_corruption_accuracy": 0.5,
            "source": "computed",
        },
        flags=[],
        seed=0,
        device="cpu",
        batch_size=1,
        chunk_size=1,
        model_meta={},
        versions={},
        started_at="",
        duration_s=0.0,
        examples_per_s=0.0,
    )
    return dataclasses.replace(base, **changes)


# errors: model fog 0.2 + 0.4, noise 0.3 + 0.5; reference fog 0.4 + 0.8, noise 0.3 + 0.3; clean 0.1 / 0.2
MODEL = _record("m", 0.9, {"fog": {"1": 0.8, "2": 0.6}, "noise": {"1": 0.7, "2": 0.5}})
REFERENCE = _record("ref", 0.8, {"fog": {"1": 0.6, "2": 0.2}, "noise": {"1": 0.7, "2": 0.7}})


def test_the_papers_definitions():
    r = corruption_errors(MODEL, REFERENCE)
    assert r["CE"] == pytest.approx({"fog": 0.6 / 1.2, "noise": 0.8 / 0.6})
    assert r["mCE"] == pytest.approx((0.5 + 0.8 / 0.6) / 2)
    # relative: sum of (E - E_clean): model fog 0.1 + 0.3, reference fog 0.2 + 0.6; noise 0.6 / 0.2
    assert r["relative_CE"] == pytest.approx({"fog": 0.4 / 0.8, "noise": 0.6 / 0.2})
    assert r["relative_mCE"] == pytest.approx((0.5 + 3.0) / 2)
    assert corruption_errors(REFERENCE, REFERENCE)["mCE"] == pytest.approx(1.0)


def test_a_reference_without_extra_error_gives_no_relative_number():
    flat = _record("ref", 0.7, {"fog": {"1": 0.7, "2": 0.7}, "noise": {"1": 0.7, "2": 0.7}})
    r = corruption_errors(MODEL, flat)
    assert r["relative_CE"]["fog"] is None and r["relative_mCE"] is None and r["mCE"] is not None


@pytest.mark.parametrize(
    "changes, needle",
    [
        ({"dataset": "mnist"}, "differs from m in dataset"),
        ({"n_examples": 5}, "in examples"),
        ({"seed": 1}, "in seed"),
        ({"family": "pgd"}, "not a corruption family"),
    ],
)
def test_incomparable_records_fail_in_one_line(changes, needle):
    with pytest.raises(UsageError) as e:
        corruption_errors(MODEL, dataclasses.replace(REFERENCE, **changes))
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_the_command_reads_records_and_defaults_the_reference(tmp_path, capsys):
    rec.save(dataclasses.replace(MODEL, model="mnist_mlp_standard"), tmp_path)
    rec.save(dataclasses.replace(REFERENCE, model="mnist_cnn_standard"), tmp_path)
    assert main(["corruptions-report", "--model", "mnist_mlp_standard", "--runs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "vs reference mnist_cnn_standard" in out and "91.7%" in out  # mCE (0.5 + 1.333) / 2
    assert main(["corruptions-report", "--model", "nobody", "--runs", str(tmp_path)]) == 2
    assert "no record" in capsys.readouterr().err
