"""ImageNet as people have it (#11): class folders, Kaggle's flat val/ + LOC_val_solution.csv, the devkit's
ground truth + meta.mat, a subset file, and preprocessing that follows the model. Fixtures are a few JPEGs
written by the tests (conftest.imagenet_images), so everything runs offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import IMAGENET_WNIDS

from robench import datasets
from robench.cli import main
from robench.core.errors import DataError, UsageError
from robench.datasets.imagenet import Preprocessing


@pytest.fixture(autouse=True)
def _no_robench_data(monkeypatch):
    monkeypatch.delenv("ROBENCH_DATA", raising=False)


def _kaggle(root: Path, labels: dict[str, str]) -> None:
    rows = [f"{Path(name).stem},{wnid} 10 20 30 40 {wnid} 1 2 3 4" for name, wnid in labels.items()]
    (root / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + "\n".join(rows) + "\n")


def _devkit(root: Path, labels: dict[str, str], extra_line: str | None = None) -> None:
    """meta.mat as the devkit has it (ILSVRC2012_IDs in the devkit's own order, not the sorted-wnid
    order; a non-leaf synset too) and the ground truth, one ILSVRC2012_ID per image n."""
    import scipy.io

    ids = {wnid: 3 - i for i, wnid in enumerate(IMAGENET_WNIDS)}  # reversed: a mapping must be used
    synsets = np.zeros(
        (4,), dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("num_children", "O")]
    )
    for i, wnid in enumerate(IMAGENET_WNIDS):
        synsets[i] = (ids[wnid], wnid, f"class {i}", 0)
    synsets[3] = (1001, "n00000001", "a parent", 2)
    devkit = root / "ILSVRC2012_devkit_t12" / "data"
    devkit.mkdir(parents=True)
    scipy.io.savemat(str(devkit / "meta.mat"), {"synsets": synsets})
    lines = [str(ids[labels[name]]) for name in sorted(labels)] + ([extra_line] if extra_line else [])
    (devkit / "ILSVRC2012_validation_ground_truth.txt").write_text("\n".join(lines) + "\n")


def _samples(root: Path, split: str, **kwargs) -> list[tuple[str, int]]:
    return [(p.name, y) for p, y in datasets.create_dataset("imagenet", split, root, **kwargs).samples]


def test_every_layout_gives_the_same_images_and_labels(tmp_path, imagenet_images):
    labels = imagenet_images(tmp_path / "folders" / "val", per_class=12, class_folders=True)
    kaggle = tmp_path / "kaggle"
    imagenet_images(kaggle / "ILSVRC" / "Data" / "CLS-LOC" / "val", per_class=12)
    _kaggle(kaggle, labels)
    devkit = tmp_path / "devkit"
    imagenet_images(devkit / "val", per_class=12)
    _devkit(devkit, labels)
    for split in ("test", "fit"):
        expected = _samples(tmp_path / "folders", split)
        assert len(expected) == 3 * datasets.IMAGENET_PER_CLASS
        assert _samples(kaggle, split) == _samples(devkit, split) == expected
    index = {wnid: i for i, wnid in enumerate(IMAGENET_WNIDS)}
    assert all(index[labels[name]] == y for name, y in _samples(devkit, "test"))


def test_preprocessing_follows_the_model(tmp_path, imagenet_images):
    from PIL import Image
    from torchvision import transforms

    imagenet_images(tmp_path / "val", per_class=1, class_folders=True)
    x, _ = datasets.load_tensors("imagenet", "test", data_dir=tmp_path)
    assert x.shape == (3, 3, 224, 224)  # the default: 256 then 224, bilinear
    timm_like = Preprocessing(resize=168, crop=160, interpolation="bicubic")
    x, _ = datasets.load_tensors("imagenet", "test", data_dir=tmp_path, preprocessing=timm_like)
    first = datasets.create_dataset("imagenet", "test", tmp_path).samples[0][0]
    by_hand = transforms.Compose(
        [
            transforms.Resize(168, transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(160),
            transforms.ToTensor(),
        ]
    )
    assert x.shape == (3, 3, 160, 160) and torch.equal(x[0], by_hand(Image.open(first).convert("RGB")))
    with pytest.raises(UsageError, match="crop <= resize"):
        Preprocessing(resize=100, crop=160)


def test_subset_file_picks_exactly_those_images_in_its_order(tmp_path, imagenet_images):
    imagenet_images(tmp_path / "val", per_class=12, class_folders=True)
    subset = tmp_path / "ids.txt"
    subset.write_text(
        "n01440764/ILSVRC2012_val_00000004.JPEG\nILSVRC2012_val_00000002\n\nILSVRC2012_val_00000030.JPEG\n"
    )
    test = _samples(tmp_path, "test", subset_file=subset)
    assert test == [
        ("ILSVRC2012_val_00000004.JPEG", 0),
        ("ILSVRC2012_val_00000002.JPEG", 1),
        ("ILSVRC2012_val_00000030.JPEG", 2),
    ]
    fit = _samples(tmp_path, "fit", subset_file=subset)
    assert len(fit) == 3 * datasets.IMAGENET_PER_CLASS and not {n for n, _ in test} & {n for n, _ in fit}
    with pytest.raises(UsageError, match="selects ImageNet images"):
        datasets.create_dataset("mnist5k", subset_file=subset)


def test_subset_naming_absent_images_fails_in_one_line_and_writes_nothing(tmp_path, imagenet_images, capsys):
    imagenet_images(tmp_path / "val", per_class=1, class_folders=True)
    subset = tmp_path / "ids.txt"
    subset.write_text("ILSVRC2012_val_00000001\nILSVRC2012_val_00049999\n")
    out = tmp_path / "runs"
    assert (
        main(
            [
                "eval",
                "--model",
                "torchvision:resnet18",
                "--threat",
                "clean",
                "--data-dir",
                str(tmp_path),
                "--subset-file",
                str(subset),
                "--runs",
                str(out),
            ]
        )
        == 1
    )
    err = capsys.readouterr().err.strip()
    assert err == (
        f"robench: error: subset file {subset} names 1 images not in the ImageNet folder "
        "(e.g. ILSVRC2012_val_00049999)"
    )
    assert not list(out.rglob("*.json"))


def _flat(tmp_path, imagenet_images) -> tuple[Path, dict[str, str]]:
    return tmp_path, imagenet_images(tmp_path / "val", per_class=2)


@pytest.mark.parametrize(
    "damage, message",
    [
        ("no labels", "have no labels: put LOC_val_solution.csv"),
        ("kaggle missing row", "LOC_val_solution.csv has no label for ILSVRC2012_val_00000006.JPEG"),
        (
            "kaggle unknown wnid",
            "'n99999999' (label of ILSVRC2012_val_00000001.JPEG) is not an ILSVRC2012 class",
        ),
        ("kaggle bad header", "is not Kaggle's ImageId,PredictionString file"),
        ("devkit unknown id", "ILSVRC2012_validation_ground_truth.txt line 7: '77' is not an ILSVRC2012_ID"),
        ("devkit no meta", "cannot read the devkit's"),
    ],
)
def test_bad_layouts_fail_in_one_line_naming_the_file(tmp_path, imagenet_images, damage, message):
    root, labels = _flat(tmp_path, imagenet_images)
    if damage.startswith("kaggle"):
        if damage == "kaggle missing row":
            labels = dict(list(labels.items())[:-1])
        if damage == "kaggle unknown wnid":
            labels["ILSVRC2012_val_00000001.JPEG"] = "n99999999"
        _kaggle(root, labels)
        if damage == "kaggle bad header":
            (root / "LOC_val_solution.csv").write_text("id,label\nx,y\n")
    elif damage.startswith("devkit"):
        _devkit(root, labels, extra_line="77" if damage == "devkit unknown id" else None)
        if damage == "devkit no meta":
            (root / "ILSVRC2012_devkit_t12" / "data" / "meta.mat").write_bytes(b"not a mat file")
    with pytest.raises(DataError) as err:
        datasets.create_dataset("imagenet", "test", root)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_unreadable_jpeg_is_named(tmp_path, imagenet_images):
    imagenet_images(tmp_path / "val", per_class=1, class_folders=True)
    broken = tmp_path / "val" / IMAGENET_WNIDS[1] / "ILSVRC2012_val_00000002.JPEG"
    broken.write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(DataError, match=f"cannot read image {broken}"):
        datasets.load_tensors("imagenet", "test", data_dir=tmp_path)


def test_eval_with_a_subset_file_records_it(tmp_path, imagenet_images, capsys):
    import hashlib
    import json

    import timm
    from safetensors.torch import save_file

    imagenet_images(tmp_path / "val", per_class=2, class_folders=True)
    weights = tmp_path / "w.safetensors"
    save_file(
        {k: v.contiguous() for k, v in timm.create_model("test_resnet.r160_in1k").state_dict().items()},
        str(weights),
    )
    subset = tmp_path / "ids.txt"
    subset.write_text("ILSVRC2012_val_00000005\nILSVRC2012_val_00000001\n")
    assert (
        main(
            [
                "eval",
                "--model",
                "timm:test_resnet",
                "--weights",
                str(weights),
                "--threat",
                "clean",
                "--data-dir",
                str(tmp_path),
                "--subset-file",
                str(subset),
                "--runs",
                str(tmp_path / "runs"),
                "--json",
            ]
        )
        == 0
    )
    record = json.loads(capsys.readouterr().out)
    assert record["n_examples"] == 2
    assert record["indices"]["subset"] == {
        "file": "ids.txt",
        "sha256": hashlib.sha256(subset.read_bytes()).hexdigest(),
    }


def test_a_subset_record_is_listed_as_stale_not_ranked(tmp_path, config_tree):
    """A board's protocol is its split rule: records of a subset file's images are shown apart."""
    from test_leaderboard import BOARD, THREATS, put_model

    from robench import boards

    tree = config_tree(tmp_path, threats=THREATS, boards={"x": BOARD})
    indices = {"split": "test", "start": 0, "stop": 100, "subset": {"file": "ids.txt", "sha256": "0" * 64}}
    put_model(tree, "listed", 0.9, 0.5, 0.5, indices=indices)
    page = boards.build("x", tree)[0]
    assert "images from subset file ids.txt, not the board's split rule" in page.split("## Stale records")[1]


def test_class_folders_may_repeat_a_file_name(tmp_path):
    from PIL import Image

    for wnid in IMAGENET_WNIDS[:2]:
        (tmp_path / "val" / wnid).mkdir(parents=True)
        Image.new("RGB", (40, 40)).save(tmp_path / "val" / wnid / "img.JPEG")
    assert _samples(tmp_path, "test") == [("img.JPEG", 0), ("img.JPEG", 1)]
    subset = tmp_path / "ids.txt"
    subset.write_text(f"{IMAGENET_WNIDS[1]}/img.JPEG\n")
    assert _samples(tmp_path, "test", subset_file=subset) == [("img.JPEG", 1)]
    subset.write_text("img\n")
    with pytest.raises(UsageError, match="img is in several class folders: write <wnid>/<file>"):
        datasets.create_dataset("imagenet", "test", tmp_path, subset_file=subset)
