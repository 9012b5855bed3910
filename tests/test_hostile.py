"""Hostile input, round three (issue #24): each test names its class from the issue and injects the
fault, then checks for one line on stderr, a non-zero exit and nothing lost."""

from __future__ import annotations

import errno
import hashlib
import os
import pickle
import shutil
import signal
import socket
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from robench.cli import main

REPO = Path(__file__).resolve().parent.parent
STANDARD_CARD = REPO / "configs" / "models" / "mnist_cnn_standard.yaml"

#: Half a kilobyte of nested aliases (a mapping's entries): ten levels of nine references each, 9**9
#: leaves once expanded.
ALIAS_BOMB = "".join(f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9) if i else '1'}]\n" for i in range(10))


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("robench: error: "), err
    return err


def _card_copy(tmp_path: Path, extra: str = "") -> Path:
    """The standard card beside its weights in ``tmp_path``, plus ``extra`` text at its end."""
    (tmp_path / "weights").mkdir(exist_ok=True)
    shutil.copy(REPO / "configs" / "weights" / "mnist_cnn_standard.safetensors", tmp_path / "weights")
    text = STANDARD_CARD.read_text().replace("../weights/", "weights/")
    card = tmp_path / "card.yaml"
    card.write_text(text + extra)
    return card


def _eval(*args: str) -> int:
    return main(["eval", "--dataset", "mnist5k", "--threat", "clean", "--n-examples", "8", *args])


def test_class_5c_duplicate_key_in_a_card_is_one_line_naming_file_and_key(tmp_path, capsys):
    """class 5c: a card with two ``weights:`` keys used to load silently with the second winning."""
    card = _card_copy(tmp_path, "weights:\n  path: other.safetensors\n  sha256: " + "0" * 64 + "\n")
    out = tmp_path / "out"
    assert _eval("--model", str(card), "--runs", str(out)) == 2
    err = _one_error_line(capsys)
    assert str(card) in err and "duplicate key 'weights'" in err
    assert not out.exists()


def test_class_5c_duplicate_key_in_a_nested_threat_mapping_is_refused(tmp_path, capsys):
    """class 5c: the rule holds at every depth, here inside ``per_dataset.mnist`` of a threat file."""
    (tmp_path / "threats").mkdir()
    (tmp_path / "threats" / "twice.yaml").write_text(
        "family: pgd\nparams: {norm: linf, restarts: 1}\n"
        "per_dataset:\n  mnist: {eps: 0.3, steps: 5, step_size: 0.1, eps: 0.5}\n"
    )
    code = main(["--config-dir", str(tmp_path), "eval", "--model", "mnist_cnn_standard", "--threat", "twice"])
    assert code == 2
    assert "duplicate key 'eps'" in _one_error_line(capsys)


def test_class_6a_alias_bomb_threat_is_refused_before_expansion(tmp_path, capsys):
    """class 6a: a 728-byte alias bomb used to run for a minute and die as 'internal error: MemoryError'.
    Anchors and aliases are refused outright, so the message says so (no expansion ever starts)."""
    (tmp_path / "threats").mkdir()
    bomb = tmp_path / "threats" / "bomb.yaml"
    bomb.write_text("family: pgd\nparams:\n" + ALIAS_BOMB)
    code = main(["--config-dir", str(tmp_path), "eval", "--model", "mnist_cnn_standard", "--threat", "bomb"])
    assert code == 2
    err = _one_error_line(capsys)
    assert str(bomb) in err and "anchors and aliases" in err and "refused" in err


def test_class_6a_alias_bomb_card_is_refused(tmp_path, capsys):
    """class 6a: the same for a model card (``robench eval --model card.yaml``)."""
    card = _card_copy(tmp_path, "claimed:\n" + ALIAS_BOMB)
    assert _eval("--model", str(card), "--runs", str(tmp_path / "out")) == 2
    assert "anchors and aliases" in _one_error_line(capsys)


def test_shipped_configs_use_no_anchors_and_no_repeated_keys():
    """Every shipped YAML file reads with the strict loader (robench's own files need neither feature)."""
    from robench.core import config

    for path in sorted(config.BUILTIN.rglob("*.yaml")):
        assert isinstance(config.read_yaml(path), dict), path


class _SwapAfterHash:
    """Stands in for ``hashlib`` in :mod:`robench.models.weights`: the moment a digest is taken, the file
    at ``path`` is replaced by ``other`` - the window between hashing a weights file and loading it."""

    def __init__(self, path: Path, other: bytes):
        self.path, self.other, self.swapped = path, other, False

    def sha256(self, *args):
        import hashlib

        digest, swap = hashlib.sha256(*args), self

        class Digest:
            def update(self, block):
                digest.update(block)

            def hexdigest(self):
                swap.path.write_bytes(swap.other)
                swap.swapped = True
                return digest.hexdigest()

        return Digest()


def _state(path: Path) -> dict:
    """The tensors in ``path``, copied into memory (``load_file`` maps the file: a swap would change them)."""
    from safetensors.torch import load

    return load(path.read_bytes())


def _assert_loaded(model, state: dict) -> None:
    own = model.net.state_dict()
    assert all(torch.equal(own[k], v) for k, v in state.items())


def test_class_2_a_weights_file_swapped_after_its_hash_is_not_what_loads(tmp_path, monkeypatch):
    """class 2: the file was hashed, then opened again to load, so a swap in between gave a model whose
    card pins file A computed with file B. Now the hashed bytes are the loaded bytes."""
    from robench.models import create_model, load_card_file, sha256_file, weights

    card = _card_copy(tmp_path)
    file_a = tmp_path / "weights" / "mnist_cnn_standard.safetensors"
    state_a, sha_a = _state(file_a), sha256_file(file_a)
    file_b = REPO / "configs" / "weights" / "mnist_cnn_pgd_linf.safetensors"
    swap = _SwapAfterHash(file_a, file_b.read_bytes())
    monkeypatch.setattr(weights, "hashlib", swap)
    model = create_model(load_card_file(card))
    assert swap.swapped and sha256_file(file_a) != sha_a  # the file on disk is B now
    assert model.card.weights.sha256 == sha_a
    _assert_loaded(model, state_a)


def test_class_2_a_library_file_swapped_after_its_hash_is_not_what_loads(tmp_path, monkeypatch, hf_cache):
    """class 2: the same for a library's pretrained file, whose sha256 the record pins (``pinned``)."""
    import timm
    from conftest import put_in_hf_cache
    from safetensors.torch import save_file

    from robench.models import create_model, weights

    files = {}
    for seed in (0, 1):
        torch.manual_seed(seed)
        net = timm.create_model("test_resnet.r160_in1k")
        files[seed] = tmp_path / f"{seed}.safetensors"
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(files[seed]))
    put_in_hf_cache(hf_cache, "timm/test_resnet.r160_in1k", files[0])
    cached = next(hf_cache.rglob("model.safetensors"))
    swap = _SwapAfterHash(cached, files[1].read_bytes())
    monkeypatch.setattr(weights, "hashlib", swap)
    model = create_model("timm:test_resnet")
    assert swap.swapped
    assert model.card.weights.sha256 == hashlib.sha256(files[0].read_bytes()).hexdigest()
    _assert_loaded(model, _state(files[0]))


@pytest.mark.parametrize(
    "content",
    [b"hello world\n", b"", bytes(range(256)) * 4, b"# a README\n\nnot weights\n", pickle.dumps([1, 2], 4)],
    ids=["text", "empty", "binary", "markdown", "pickled-list"],
)
def test_class_8_allow_pickle_weights_that_are_no_checkpoint_are_one_line(tmp_path, capsys, content):
    """class 8: ``--weights`` at a non-checkpoint with ``--allow-pickle`` (a text file raised KeyError, an
    internal error; others printed torch's advice to load with weights_only=False)."""
    from robench.core.errors import CheckpointError
    from robench.models import create_model, load_card

    weights = tmp_path / "notes.pt"
    weights.write_bytes(content)
    with pytest.raises(CheckpointError) as err:
        create_model(load_card("timm:test_resnet", weights=weights), allow_pickle=True)
    message = str(err.value)
    assert "\n" not in message and str(weights) in message and "likely succeed" not in message
    assert capsys.readouterr().err == ""


def test_class_8_allow_pickle_weights_holding_no_tensors_are_one_line(tmp_path):
    """class 8: a pickle of a plain mapping is refused as no state dict, before any key is matched."""
    from robench.core.errors import CheckpointError
    from robench.models import create_model, load_card

    weights = tmp_path / "numbers.pt"
    torch.save({"conv1.weight": 3}, weights)
    with pytest.raises(CheckpointError, match="does not hold a state dict"):
        create_model(load_card("timm:test_resnet", weights=weights), allow_pickle=True)


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(done.stdout)


def _leftover(path: Path, pid: int) -> Path:
    """A temporary file of ``path`` as :func:`robench.core.record.atomic_write_bytes` names it, half-written
    by process ``pid``."""
    tmp = path.parent / f".{path.name}.{socket.gethostname()}-{pid}.k1ll3d_x.tmp"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_bytes(b'{"half": ')
    return tmp


def test_class_8_half_written_tmp_files_of_dead_writers_are_swept_by_the_next_record_write(tmp_path, capsys):
    """class 8: a kill during an atomic write left ``.<name>.<rand>.tmp`` beside the record, never cleaned.
    The next write of that record removes those of dead writers (one line each) and keeps a live one's."""
    record_path = tmp_path / "mnist5k" / "mnist_cnn_standard" / "clean.json"
    dead, live = _leftover(record_path, _dead_pid()), _leftover(record_path, os.getpid())
    other = _leftover(record_path.with_name("pgd_linf.json"), _dead_pid())  # another file's: not this write's
    assert _eval("--model", "mnist_cnn_standard", "--runs", str(tmp_path)) == 0
    assert record_path.is_file() and not dead.exists() and live.exists() and other.exists()
    [line] = [x for x in capsys.readouterr().err.splitlines() if ".tmp" in x]
    assert line.startswith("robench: removed ") and dead.name in line and "gone" in line


def test_class_8_a_chunk_tmp_of_a_dead_writer_is_swept_when_the_chunk_is_written(tmp_path, capsys):
    """class 8: the same in a resumable chunk folder, where the rerun writes the chunk the kill cut short."""
    from robench.engine.chunks import save_chunk

    chunk = tmp_path / ".partial" / "clean-0123" / "chunk-00000.npz"
    dead = _leftover(chunk, _dead_pid())
    save_chunk(chunk, {"robust": np.ones(3, dtype=bool)}, "identity")
    assert chunk.is_file() and not dead.exists()
    assert f"removed {dead}" in capsys.readouterr().err


def test_class_7_sigterm_during_a_uap_fit_stops_the_fit_at_the_next_step(
    tmp_path, standard_model, monkeypatch
):
    """class 7: SIGTERM during a UAP fit was honoured only after the whole fit (33-62 s), because the fit
    loop never checked. Now the fit stops after the step it is in, with the engine's interruption: the
    model sees one forward (the step the signal came in), not the fit's hundreds."""
    from robench.engine import evaluate, stop
    from robench.threats import create_threat

    monkeypatch.setenv("ROBENCH_CACHE", str(tmp_path / "cache"))
    forwards = []

    class SignalledDuringFit(torch.nn.Module):
        """The standard model, with a SIGTERM arriving during the fit's first step (64 images)."""

        card = standard_model.card

        def __init__(self):
            super().__init__()
            self.net = standard_model

        def forward(self, x):
            forwards.append(len(x))
            if len(x) == 64 and forwards.count(64) == 1:
                os.kill(os.getpid(), signal.SIGTERM)
            return self.net(x)

    threat = create_threat("uap_linf", "mnist5k", epochs=1, fit_batch_size=64)
    with stop.graceful(), pytest.raises(stop.Interrupted) as interrupted:
        evaluate(SignalledDuringFit(), threat, "mnist5k", n_examples=8, device="cpu")
    assert interrupted.value.signum == signal.SIGTERM
    assert forwards == [1, 64]  # the engine's check of one example's shape, then the fit's first step
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").rglob("*.npy"))  # no δ cached


def _png_declaring(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header declares ``width`` x ``height`` pixels (only the IHDR chunk is needed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def _imagenet_with(tmp_path: Path, imagenet_images, name: str, write) -> Path:
    """A class-folder ImageNet with its second image replaced by what ``write(path)`` writes."""
    from conftest import IMAGENET_WNIDS

    imagenet_images(tmp_path / "val", per_class=1, class_folders=True)
    bad = tmp_path / "val" / IMAGENET_WNIDS[1] / name
    (bad.parent / "ILSVRC2012_val_00000002.JPEG").unlink()
    write(bad)
    return bad


def test_class_6c_a_png_declaring_40000_by_40000_pixels_is_one_line_data_error(tmp_path, imagenet_images):
    """class 6c: Pillow's decompression-bomb guard surfaced as an internal error; now a DataError naming
    the file."""
    from robench import datasets
    from robench.core.errors import DataError

    bomb = _imagenet_with(
        tmp_path, imagenet_images, "ILSVRC2012_val_00000002.png", lambda p: _png_declaring(p, 40000, 40000)
    )
    with pytest.raises(DataError) as err:
        datasets.load_tensors("imagenet", "test", data_dir=tmp_path)
    message = str(err.value)
    assert str(bomb) in message and "decompression bomb" in message and "\n" not in message


def test_class_8_an_unreadable_jpeg_in_a_decode_worker_is_one_line(tmp_path, imagenet_images):
    """class 8: with decode workers the DataLoader re-raised the worker's DataError with its 25-line
    traceback as the message; the message is now the worker's own line."""
    from robench import datasets
    from robench.core.errors import DataError

    broken = _imagenet_with(
        tmp_path, imagenet_images, "ILSVRC2012_val_00000002.JPEG", lambda p: p.write_bytes(b"\xff\xd8 cut")
    )
    examples = datasets.create_dataset("imagenet", "test", tmp_path)
    with pytest.raises(DataError) as err:
        list(datasets.stream_batches(examples, 0, len(examples), 2, torch.device("cpu"), workers=2))
    expected = f"cannot read image {broken} (UnidentifiedImageError): replace or remove the file"
    assert str(err.value) == expected


@pytest.mark.parametrize("layout", ["kaggle", "devkit"])
def test_class_8_a_label_file_that_is_not_utf8_is_one_line(tmp_path, imagenet_images, monkeypatch, layout):
    """class 8: a non-UTF-8 ImageNet label file (Kaggle's csv, the devkit's ground truth) raised
    UnicodeDecodeError, an internal error; now a DataError naming the file."""
    from test_imagenet_layouts import _devkit, _kaggle

    from robench import datasets
    from robench.core.errors import DataError

    monkeypatch.delenv("ROBENCH_DATA", raising=False)
    labels = imagenet_images(tmp_path / "val", per_class=2)
    if layout == "kaggle":
        _kaggle(tmp_path, labels)
        damaged = tmp_path / "LOC_val_solution.csv"
    else:
        _devkit(tmp_path, labels)
        damaged = tmp_path / "ILSVRC2012_devkit_t12" / "data" / "ILSVRC2012_validation_ground_truth.txt"
    damaged.write_bytes(damaged.read_bytes().replace(b"\n", "\n\u00e9".encode("latin-1"), 1))
    with pytest.raises(DataError) as err:
        datasets.create_dataset("imagenet", "test", tmp_path)
    assert f"{damaged} is not UTF-8 text" in str(err.value) and "\n" not in str(err.value)


def test_class_8_a_full_disk_while_writing_the_lock_is_one_line_leaving_no_lock(
    tmp_path, capsys, monkeypatch
):
    """class 8: ENOSPC while the lock file's holder details are written was an internal error."""
    from robench.core import locks

    def full(fd, data, offset):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(locks.os, "pwrite", full)
    out = tmp_path / "out"
    assert _eval("--model", "mnist_cnn_standard", "--runs", str(out)) == 1
    err = _one_error_line(capsys)
    assert ".clean.json.lock" in err and "No space left on device" in err
    assert not list(out.rglob("*.lock")) and not list(out.rglob("*.json"))


def test_class_8_a_folder_where_the_lock_file_goes_is_one_line(tmp_path, capsys):
    """class 8: a folder at the lock's path raised IsADirectoryError, an internal error."""
    lock = tmp_path / "mnist5k" / "mnist_cnn_standard" / ".clean.json.lock"
    lock.mkdir(parents=True)
    assert _eval("--model", "mnist_cnn_standard", "--runs", str(tmp_path)) == 1
    err = _one_error_line(capsys)
    assert str(lock) in err and "folder is in the way" in err
    assert lock.is_dir() and not (lock.parent / "clean.json").exists()


def test_class_8_a_3_channel_architecture_on_a_1_channel_dataset_is_one_line(tmp_path, capsys):
    """class 8: a card may pair a 3-channel timm network with 1-channel MNIST (check_dataset compares the
    card's dataset, not the network); torch's shape error at the first forward was an internal error."""
    import timm
    from safetensors.torch import save_file

    net = timm.create_model("test_resnet.r160_in1k", num_classes=10)
    weights = tmp_path / "rgb.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(weights))
    card = tmp_path / "rgb_on_mnist.yaml"
    card.write_text(
        "arch: test_resnet.r160_in1k\ndataset: mnist5k\nnum_classes: 10\nnormalization: none\n"
        f"weights: {{path: {weights.name}, sha256: {hashlib.sha256(weights.read_bytes()).hexdigest()}}}\n"
    )
    out = tmp_path / "out"
    assert _eval("--model", str(card), "--runs", str(out), "--threat", "uap_linf") == 2
    err = _one_error_line(capsys)
    assert "'rgb_on_mnist'" in err and "(1, 28, 28)" in err and "3 channels" in err
    assert not list(out.rglob("*.json"))


def test_class_8_a_submitted_name_too_long_for_a_file_name_is_one_line(tmp_path, capsys, config_tree):
    """class 8: ``robench submit --name`` of 300 characters passed every check and failed as an internal
    error (ENAMETOOLONG) only when its first file was written."""
    root = config_tree(tmp_path / "repo", models={}, boards={})
    weights = _card_copy(tmp_path).parent / "weights" / "mnist_cnn_standard.safetensors"
    args = ["--checkpoint", str(weights), "--arch", "mnist_cnn", "--dataset", "mnist5k"]
    before = sorted(root.rglob("*"))
    assert main(["submit", *args, "--name", "m" * 300, "--root", str(root)]) == 2
    assert "300 characters" in _one_error_line(capsys)
    assert sorted(root.rglob("*")) == before


def test_class_8_the_longest_name_allowed_fits_every_file_robench_makes_of_it(tmp_path, capsys):
    """class 8: a threat name of the maximal length makes a record (and its temporary file, lock and chunk
    folder) the file system accepts; one character more is refused before any work."""
    from robench.core.record import MAX_NAME

    (tmp_path / "threats").mkdir()
    for length in (MAX_NAME, MAX_NAME + 1):
        (tmp_path / "threats" / f"{'t' * length}.yaml").write_text("family: clean\n")
    out = tmp_path / "out"
    run = ["--config-dir", str(tmp_path), "eval", "--model", "mnist_cnn_standard", "--n-examples", "8"]
    assert main([*run, "--threat", "t" * (MAX_NAME + 1), "--runs", str(out)]) == 2
    assert f"{MAX_NAME + 1} characters" in _one_error_line(capsys)
    assert main([*run, "--threat", "t" * MAX_NAME, "--runs", str(out)]) == 0
    assert (out / "mnist" / "mnist_cnn_standard" / f"{'t' * MAX_NAME}.json").is_file()
