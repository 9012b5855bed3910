"""Damaged files on disk (issue #14 item 1): each fault is injected and the outcome checked, either the
record an undisturbed run writes, or a one-line refusal that changed nothing on disk.

The counts in docs/reliability.md ("Failure catalogue") are the cases of this file and its neighbours.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil

import numpy as np
import pytest

from robench import evaluate
from robench.engine import chunks
from robench.engine.chunks import IDENTITY_KEY

MODEL = "mnist_cnn_aug30"  # robust on some examples, broken on others: a wrong chunk shows
N, CHUNK = 120, 40  # three chunks of one small batch each: fast, and enough to damage two and keep one
RESULT_FIELDS = ("per_example", "clean_per_example", "robust_acc", "clean_acc", "flags", "config_hash")


def _fields(record) -> dict:
    details = json.loads(json.dumps(record.details))
    for fit in [details.get("fit", {})]:
        fit.pop("cached", None), fit.pop("fit_time_s", None)
    return {k: getattr(record, k) for k in RESULT_FIELDS} | {"details": details}


def _run(out, threat="spatial_random", shard=None, **kw):
    return evaluate(
        MODEL,
        threat,
        "mnist5k",
        n_examples=N,
        chunk_size=CHUNK,
        batch_size=CHUNK,
        device="cpu",
        out_dir=out,
        shard=shard,
        progress=False,
        **kw,
    )


@pytest.fixture(scope="module")
def clean_record(tmp_path_factory):
    fields = _fields(_run(tmp_path_factory.mktemp("clean")))
    assert 0 < fields["per_example"].count("1") < N  # verdicts that a wrong chunk would change
    return fields


def _chunk_files(out):
    return sorted((out / "mnist5k" / MODEL / ".partial").glob("*/chunk-*.npz"))


def _rewrite(path, **changes):
    """Rewrite a chunk file with some arrays replaced (None: removed)."""
    with np.load(path) as data:
        stats = {k: data[k] for k in data.files}
    stats.update(changes)
    np.savez(path, **{k: v for k, v in stats.items() if v is not None})


DAMAGE = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
    "garbage": lambda p: p.write_bytes(b"\x00not a zip" * 50),
    "empty": lambda p: p.write_bytes(b""),
    "other run": lambda p: _rewrite(p, **{IDENTITY_KEY: np.array("0123456789abcdef")}),
    "no identity": lambda p: _rewrite(p, **{IDENTITY_KEY: None}),
    "short array": lambda p: _rewrite(p, robust=np.zeros(CHUNK - 1, bool)),
    "float verdicts": lambda p: _rewrite(p, robust=np.zeros(CHUNK, np.float32)),
    "missing verdicts": lambda p: _rewrite(p, clean_correct=None),
    "robust but wrong": lambda p: _rewrite(
        p, robust=np.ones(CHUNK, bool), clean_correct=np.zeros(CHUNK, bool)
    ),
    "scalar": lambda p: _rewrite(p, robust=np.array(True)),
    "a folder": lambda p: (p.unlink(), p.mkdir()),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_chunk_is_recomputed_and_the_record_is_unchanged(tmp_path, clean_record, damage, capsys):
    _run(tmp_path, shard=(0, 1))  # every chunk on disk, no record yet
    files = _chunk_files(tmp_path)
    assert len(files) == 3
    DAMAGE[damage](files[1])
    capsys.readouterr()
    record = _run(tmp_path)
    assert _fields(record) == clean_record
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "chunk-00001.npz" in lines[0] and "recomputing it" in lines[0]


def test_the_chunk_identity_covers_a_fitted_perturbation(tmp_path, monkeypatch, capsys):
    """Chunks computed against one δ are refused when the run now reads another δ from the cache."""
    monkeypatch.setenv("ROBENCH_CACHE", str(tmp_path / "cache"))
    kw = {"threat": "uap_linf", "overrides": {"epochs": 1}}
    _run(tmp_path / "a", shard=(0, 1), **kw)
    cached = next((tmp_path / "cache" / "uap").glob("*.npy"))
    delta = np.load(cached)
    blob = _npy(delta * 0.5)  # another valid δ (inside the ball), vouched for by a correct sidecar
    cached.write_bytes(blob)
    sidecar = json.loads(cached.with_suffix(".json").read_text())
    sidecar["sha256"] = hashlib.sha256(blob).hexdigest()
    cached.with_suffix(".json").write_text(json.dumps(sidecar))
    capsys.readouterr()
    record = _run(tmp_path / "a", **kw)
    err = capsys.readouterr().err
    assert err.count("written by another run or another fitted perturbation") == 3
    shutil.rmtree(tmp_path / "a")
    assert _fields(_run(tmp_path / "b", **kw)) == _fields(record)  # the half-δ run, computed from scratch


def _npy(array) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


CACHE_DAMAGE = {
    "truncated tensor": lambda npy, js: npy.write_bytes(npy.read_bytes()[:100]),
    "bit flip": lambda npy, js: npy.write_bytes(npy.read_bytes()[:-4] + b"\x00\x00\x80\x3f"),
    "sidecar not json": lambda npy, js: js.write_text("{"),
    "sidecar a list": lambda npy, js: js.write_text("[]"),
    "sidecar of another key": lambda npy, js: js.write_text(js.read_text().replace(npy.stem, "0" * 16)),
    "sidecar missing": lambda npy, js: js.unlink(),
    "nan tensor": lambda npy, js: _vouch(npy, js, np.full(np.load(npy).shape, np.nan, np.float32)),
    "wrong shape": lambda npy, js: _vouch(npy, js, np.zeros((3, 3), np.float32)),
    "outside the ball": lambda npy, js: _vouch(npy, js, np.ones(np.load(npy).shape, np.float32)),
    "float64": lambda npy, js: _vouch(npy, js, np.load(npy).astype(np.float64)),
}


def _vouch(npy, js, array):
    """Replace the tensor and keep the sidecar consistent with it: only the content checks can catch it."""
    blob = _npy(array)
    npy.write_bytes(blob)
    sidecar = json.loads(js.read_text())
    sidecar["sha256"] = hashlib.sha256(blob).hexdigest()
    js.write_text(json.dumps(sidecar))


@pytest.fixture(scope="module")
def uap_reference(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROBENCH_CACHE", str(cache))
        record = _run(None, threat="uap_linf", overrides={"epochs": 1})
    return cache, _fields(record)


@pytest.mark.parametrize("damage", CACHE_DAMAGE)
def test_a_damaged_cached_fit_is_refitted(tmp_path, monkeypatch, uap_reference, damage, capsys):
    cache, reference = uap_reference
    shutil.copytree(cache, tmp_path / "cache")
    monkeypatch.setenv("ROBENCH_CACHE", str(tmp_path / "cache"))
    npy = next((tmp_path / "cache" / "uap").glob("*.npy"))
    CACHE_DAMAGE[damage](npy, npy.with_suffix(".json"))
    capsys.readouterr()
    record = _run(None, threat="uap_linf", overrides={"epochs": 1})
    assert record.details["fit"]["cached"] is False
    assert _fields(record) == reference
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(npy) in err[0] and "fitting again" in err[0]
    again = _run(None, threat="uap_linf", overrides={"epochs": 1})  # the refit repaired the cache
    assert again.details["fit"]["cached"] is True


def test_chunk_identity_changes_with_the_threat_state():
    identity = {"model": "m", "seed": 0}
    assert chunks.chunk_identity(identity, None) != chunks.chunk_identity(identity, "ab")
    assert chunks.chunk_identity(identity, "ab") != chunks.chunk_identity({**identity, "seed": 1}, "ab")


# --- committed records -------------------------------------------------------------------------------------

RECORD_DAMAGE = {  # edit of the JSON object -> what the board says about it
    "hand-edited verdict": (
        lambda d: d.update(per_example="10"[int(d["per_example"][0])] + d["per_example"][1:]),
        "not the mean",
    ),
    "hand-edited accuracy": (lambda d: d.update(robust_acc=0.5), "not the mean"),
    "edited protocol, old hash": (lambda d: d.update(seed=3), "config_hash is not the hash"),
    "short verdicts": (lambda d: d.update(per_example=d["per_example"][:-1]), "not 1000 characters"),
    "verdict of another alphabet": (
        lambda d: d.update(per_example="2" * 1000),
        "not 1000 characters|not a string of 0s and 1s",  # record.problem's words | the board's own check
    ),
    "robust not clean": (lambda d: d.update(clean_per_example="0" * 1000, clean_acc=0.0), "robust but not"),
    "n_examples a string": (lambda d: d.update(n_examples="1000"), "n_examples is not an int"),
    "details a list": (lambda d: d.update(details=[]), "details is not a dict"),
}


def _board_root(tmp_path):
    from robench.boards import RUNS_DIR

    root = tmp_path / "root"
    shutil.copytree(REPO / RUNS_DIR, root / RUNS_DIR)
    for page in (REPO / "leaderboards").glob("*.*"):
        shutil.copy(page, root / "leaderboards" / page.name)
    return root


REPO = __import__("pathlib").Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("damage", RECORD_DAMAGE)
def test_a_damaged_committed_record_is_refused_by_name(tmp_path, damage):
    from robench.boards import RUNS_DIR, build
    from robench.core.errors import RecordError
    from robench.core.record import load_checked

    root = _board_root(tmp_path)
    path = root / RUNS_DIR / "mnist5k" / "mnist_cnn_pgd_linf" / "pgd_linf.json"
    data = json.loads(path.read_text())
    edit, reason = RECORD_DAMAGE[damage]
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(RecordError, match=reason) as error:
        load_checked(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)
    invalid = build("mnist5k", root).markdown.split("## Invalid records (not shown)")[1]
    [line] = [
        x
        for x in invalid.replace("\\_", "_").splitlines()
        if x.startswith("- mnist_cnn_pgd_linf / pgd_linf: ")
    ]
    assert re.search(reason, line)


@pytest.mark.parametrize("content", [b"", b"{", b"[]", b"\xff\xfe", b'{"model": 1}', b"[" * 100000])
def test_an_unreadable_committed_record_stops_the_board_in_one_line(tmp_path, capsys, content):
    from robench import cli
    from robench.boards import RUNS_DIR

    root = _board_root(tmp_path)
    path = root / RUNS_DIR / "mnist5k" / "mnist_cnn_pgd_linf" / "pgd_linf.json"
    path.write_bytes(content)
    before = {p: p.read_bytes() for p in (root / "leaderboards").glob("*.*")}
    assert cli.main(["leaderboard", "--root", str(root)]) == 1
    err = capsys.readouterr().err.strip()
    assert (
        err.count("\n") == 0 and str(path) in err and err.startswith("robench: error: cannot read run record")
    )
    assert {p: p.read_bytes() for p in (root / "leaderboards").glob("*.*")} == before
