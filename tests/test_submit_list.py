"""``robench submit --list FILE`` (#11): every model of a list onto its board in one resumable command.

Reuses test_submit's tiny tree (cheap threats on 50 of MNIST's test images); the library-spec case puts a timm
model's random weights in the Hugging Face cache and evaluates three generated ImageNet JPEGs."""

from __future__ import annotations

import timm
import yaml
from conftest import put_in_hf_cache
from safetensors.torch import save_file
from test_submit import BOARD, THREATS, checkpoint, records, submit, write_card

from robench.boards.render import standings
from robench.core import record


def test_a_list_submits_every_model_reports_failures_and_resumes(tmp_path, config_tree, capsys):
    root = config_tree(tmp_path / "repo", threats=THREATS, boards={"tiny": BOARD}, models={})
    first = write_card(tmp_path / "cards" / "first.yaml", checkpoint(tmp_path / "w1.safetensors", 1))
    second = write_card(tmp_path / "cards" / "second.yaml", checkpoint(tmp_path / "w2.safetensors", 2))
    listing = tmp_path / "models.txt"
    listing.write_text(
        f"# two models and a typo\n{first}\n\n{tmp_path / 'cards' / 'thrid.yaml'}  # typo\n{second}\n"
    )
    assert submit(root, "--list", listing) == 1
    err = capsys.readouterr().err
    assert f"[2/3] {tmp_path / 'cards' / 'thrid.yaml'}: error: model card file" in err
    assert "1 of 3 models not submitted" in err
    assert set(standings("tiny", root)["model"]) == {"first", "second"}  # both ranked
    done = {t: r.started_at for t, r in records(root, "first").items()}
    assert set(done) == {"clean", "pgd_linf", "spatial_rotation"}

    listing.write_text(f"{first}\n{second}\n")  # the typo fixed by removing it: nothing is evaluated again
    assert submit(root, "--list", listing) == 0
    err = capsys.readouterr().err
    assert err.count("already ranked, skipped") == 2
    assert {t: r.started_at for t, r in records(root, "first").items()} == done


def test_bad_lists_are_one_line(tmp_path, config_tree, capsys):
    root = config_tree(tmp_path / "repo", threats=THREATS, boards={"tiny": BOARD}, models={})
    listing = tmp_path / "models.txt"
    listing.write_text("a.yaml\na.yaml\n")
    assert submit(root, "--list", listing) == 2
    assert "names 'a.yaml' twice" in capsys.readouterr().err
    card = write_card(tmp_path / "c.yaml", checkpoint(tmp_path / "w.safetensors", 3))
    listing.write_text(f"{card}\n")
    assert submit(root, card, "--list", listing) == 2
    assert "--list goes without a card file" in capsys.readouterr().err


IMAGENET_THREATS = {
    **THREATS,
    "pgd_linf": (
        "family: pgd\nparams: {norm: linf, restarts: 1}\n"
        "per_dataset: {imagenet: {eps: 4/255, steps: 1, step_size: 4/255}}\n"
    ),
}


def test_a_library_spec_gets_a_card_pinning_the_file_read(
    tmp_path, config_tree, hf_cache, imagenet_images, capsys
):
    board = BOARD.replace("dataset: mnist", "dataset: imagenet").replace("n_examples: 50", "n_examples: 3")
    root = config_tree(tmp_path / "repo", threats=IMAGENET_THREATS, boards={"tiny": board}, models={})
    data = tmp_path / "imagenet"
    imagenet_images(data / "val", per_class=1, class_folders=True)
    weights = tmp_path / "w.safetensors"
    net = timm.create_model("test_resnet.r160_in1k")
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(weights))
    put_in_hf_cache(hf_cache, "timm/test_resnet.r160_in1k", weights)
    listing = tmp_path / "models.txt"
    listing.write_text("timm:test_resnet\n")
    assert submit(root, "--list", listing, "--data-dir", data) == 0, capsys.readouterr().err
    card = yaml.safe_load((root / "configs" / "models" / "timm-test_resnet.yaml").read_text())
    from robench.models import sha256_file

    assert card["weights"] == {"pretrained": True, "sha256": sha256_file(weights)}
    assert card["preprocessing"] == {"resize": 168, "crop": 160, "interpolation": "bilinear"}
    clean = record.load(root / "leaderboards" / "runs" / "imagenet" / "timm-test_resnet" / "clean.json")
    assert clean.model_meta["weights_sha256"] == sha256_file(weights) and clean.n_examples == 3
    assert not (root / "leaderboards" / ".submit").exists()
    assert (
        "timm:test\\_resnet (timm-test\\_resnet)" in (root / "leaderboards" / "tiny.md").read_text()
    )  # ranked
