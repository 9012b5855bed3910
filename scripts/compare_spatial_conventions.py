"""robench's spatial grid against Foolbox's SpatialAttack and MadryLab's original transform, per example.

All three search the same 31 x 5 x 5 grid (rotations in [-30, 30] degrees, translations in [-3, 3] px per
axis, identity included) and call an example robust only if it is classified correctly under every
transform. They differ in the warp that a grid point (angle, tx, ty) names:

- robench (``robench.threats.spatial``): one bilinear resampling, out(p) = in(R p + t), p in pixels about
  the image centre, ``affine_grid``/``grid_sample`` with align_corners=False, zero fill.
- Foolbox 3 (``foolbox/attacks/spatial_attack_transformations.py``, ``transform_pt``): the same
  out(p) = in(R p + t) and one bilinear resampling, but in align_corners=True coordinates, with the
  translation divided by W/2 where one pixel is 2/(W-1): a shift of t px moves the image t (W-1)/W px
  (3 -> 2.89 on MNIST).
- MadryLab (github.com/MadryLab/adversarial_spatial, ``resnet.py``: the grid of ``spatial_attack.py`` is
  fed to the model as a ``transform`` input): zero-pad by 16, ``tf.contrib.image.rotate`` (bilinear, about
  the centre), then ``tf.contrib.image.transform`` with [1, 0, -tx, 0, 1, -ty] (a second bilinear
  resampling, content moves by +t), then crop back. So out(p) = in(R (p - t)): the rotation comes first,
  the translation is along the image axes after it, and fractional shifts interpolate twice. Their code is
  TensorFlow 1 for CIFAR-10; ``robench.threats.ops.geometry.madrylab_warp`` re-implements it in PyTorch for
  any image size, and is what the spatial threats' ``warp: madrylab`` uses (``spatial_madrylab``).

Foolbox's warp is robench's own matrix read with align_corners=True (``robench_aligned``: the ``spatial``
threat's ``align_corners: true``); the script checks that on pixels (``transform_pt`` against it, largest
gap printed) and, with ``--foolbox-attack``, runs Foolbox's ``SpatialAttack`` itself and checks that its
verdicts equal robench_aligned's on every example. ``rotate_then_translate`` (MadryLab's order,
out(p) = in(R (p - t)), in one resampling) lies between robench and MadryLab and says which difference
decides each disagreement: the order, or the second interpolation.

For each model the script classifies every example under every grid transform in every convention
([N, 775] correctness each), checks that robench's verdicts equal the committed ``spatial`` record's, and
prints robust %, agreement with robench % and, for the examples on which two conventions disagree, the
transforms that decide it (those under which the stricter one fails) and what they have in common.
It costs 775 forwards of N images per convention: about 0.1 s of one CPU thread per forward of 500.

Foolbox is a peer, not a robench dependency: ``.venv/bin/pip install foolbox==3.3.4`` for this script.

With ``--madrylab-records DIR`` (the ``--out`` of ``robench eval --threat spatial_madrylab`` runs) it also
sets each model's committed ``spatial`` record beside its ``spatial_madrylab`` record, per example (robust %
under each warp, agreement), and checks that the threat's madrylab verdicts equal this brute force's;
``--records-only`` does just that comparison, with no forwards.

Usage: .venv/bin/python scripts/compare_spatial_conventions.py
       [--models mnist_cnn_aug30,mnist_cnn_worst_of_10] [--n-examples 200] [--foolbox-attack]
       [--madrylab-records DIR [--records-only]] [--json out.json]
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import sys
import time
from pathlib import Path

import torch

from robench.datasets import load_tensors
from robench.models import create_model, load_card
from robench.threats.ops.geometry import madrylab_warp, sample_pixels, warp_transforms
from robench.threats.spatial import grid_transforms

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "leaderboards" / "runs"
MADRYLAB = "spatial_madrylab"  # the named threat: the grid with warp: madrylab
GRID = {"max_rotation": 30.0, "n_rotations": 31, "max_translation": 3.0, "n_translations": 5}


def _pixel_grid(size: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-index coordinates (x right, y down) centred on the image centre, each [size, size]."""
    c = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    return xx, yy


def _rotation(transforms: torch.Tensor):
    rad = transforms[:, 0].double() * (math.pi / 180.0)
    return torch.cos(rad)[:, None, None], torch.sin(rad)[:, None, None]


def robench_warp(x, transforms):
    """robench's own warp, from the module the ``spatial`` threat uses."""
    return warp_transforms(x, transforms, align_corners=False)


def foolbox_warp(x, transforms):
    """Foolbox 3's ``transform_pt`` (through its ``rotate_and_shift``): one transform for the batch."""
    import eagerpy as ep
    from foolbox.attacks.spatial_attack_transformations import rotate_and_shift

    a, tx, ty = (float(v) for v in transforms[0])
    assert (transforms == transforms[0]).all(), "transform_pt applies one transform to the whole batch"
    return rotate_and_shift(ep.astensor(x), translation=(tx, ty), rotation=a).raw


def robench_aligned_warp(x, transforms):
    """robench's matrices read with align_corners=True (the ``spatial`` threat's own ``align_corners``
    parameter): a translation of t px then moves t (W-1)/W px, as in Foolbox."""
    return warp_transforms(x, transforms, align_corners=True)


def rotate_then_translate_warp(x, transforms):
    """MadryLab's order, out(p) = in(R (p - t)), in one resampling."""
    xx, yy = _pixel_grid(x.shape[-1], x.device)
    cos, sin = _rotation(transforms.to(x.device))
    px, py = xx - transforms[:, 1, None, None].to(x.device), yy - transforms[:, 2, None, None].to(x.device)
    return sample_pixels(x, cos * px - sin * py, sin * px + cos * py)


CONVENTIONS = {  # Foolbox's is robench_aligned (checked on pixels and, with --foolbox-attack, on verdicts)
    "robench": robench_warp,
    "robench_aligned": robench_aligned_warp,
    "rotate_then_translate": rotate_then_translate_warp,
    "madrylab": madrylab_warp,
}


def correctness(model, x, y, transforms, warp_fn) -> torch.Tensor:
    """[N, T] bool: is example n classified correctly under transform t (with ``warp_fn``); one forward
    per transform over all N images (Foolbox's transform_pt takes one transform per call)."""
    out = torch.empty(len(x), len(transforms), dtype=torch.bool)
    with torch.inference_mode():
        for j, t in enumerate(transforms):
            out[:, j] = model(warp_fn(x, t.expand(len(x), 3))).argmax(1) == y
    return out


def foolbox_attack_robust(model, x, y) -> torch.Tensor:
    """Foolbox's own SpatialAttack over the same grid: True where it finds no misclassified transform."""
    import foolbox as fb

    fmodel = fb.PyTorchModel(model, bounds=(0, 1))
    attack = fb.attacks.SpatialAttack(
        max_translation=3, max_rotation=30, num_translations=5, num_rotations=31, grid_search=True
    )
    with torch.no_grad():
        _, _, success = attack(fmodel, x, fb.criteria.Misclassification(y))
    return ~success.cpu()


def _pct(mask: torch.Tensor) -> float:
    return round(100 * mask.float().mean().item(), 1)


def describe(transform) -> str:
    a, tx, ty = (float(v) for v in transform)
    return f"({a:+.0f} deg, {tx:+.1f}, {ty:+.1f})"


def deciding(transforms, stricter: torch.Tensor, laxer: torch.Tensor, keys) -> dict:
    """For examples robust under ``laxer`` but not ``stricter``: what their deciding transforms (those
    failing under ``stricter`` alone) have in common."""
    idx = torch.nonzero(laxer.all(1) & ~stricter.all(1)).flatten()
    kinds, points = collections.Counter(), collections.Counter()
    for i in idx.tolist():
        fails = torch.nonzero(~stricter[i]).flatten()
        kinds.update({k for f in fails.tolist() for k in keys(transforms[f])})
        points.update(describe(transforms[f]) for f in fails.tolist())
    return {
        "n": len(idx),
        "examples": idx.tolist(),
        "share_with": {k: round(v / max(len(idx), 1), 3) for k, v in kinds.most_common()},
        "top_transforms": points.most_common(5),
    }


def transform_keys(t) -> set[str]:
    """Coarse properties of a grid point, to say what kind of transform decides."""
    a, tx, ty = (abs(float(v)) for v in t)
    keys = {"rotation" if a > 0 else "no rotation"}
    keys.add("a 3-px shift on some axis" if max(tx, ty) == 3 else "shifts <= 1.5 px")
    if (tx % 1) or (ty % 1):
        keys.add("a fractional (1.5 px) shift")
    if a > 0 and (tx or ty):
        keys.add("rotation and shift together")
    return keys


def record_verdicts(model_name: str, n: int | None, runs: Path = RUNS, threat: str = "spatial"):
    """The first ``n`` (None: all) per-example verdicts of ``runs/mnist5k/<model>/<threat>.json``, if it
    is a record of this grid from example 0, else None."""
    path = runs / "mnist5k" / model_name / f"{threat}.json"
    if not path.exists():
        return None
    rec = json.loads(path.read_text())
    if rec["indices"]["start"] != 0 or rec["threat_config"]["max_translation"] != 3.0:
        return None
    return torch.tensor([c == "1" for c in rec["per_example"][:n]])


def compare_records(model_name: str, madrylab_runs: Path) -> dict | None:
    """The committed ``spatial`` record against a ``spatial_madrylab`` record of the same examples (the
    grid through each warp, computed by ``robench eval``), per example; no forwards."""
    ours = record_verdicts(model_name, None)
    theirs = record_verdicts(model_name, None, madrylab_runs, MADRYLAB)
    if ours is None or theirs is None or len(ours) != len(theirs):
        return None
    return {
        "n_examples": len(ours),
        "robust_pct": {"robench": _pct(ours), "madrylab": _pct(theirs)},
        "agreement_pct": _pct(ours == theirs),
        "robust_under_madrylab_only": int((theirs & ~ours).sum()),
        "robust_under_robench_only": int((ours & ~theirs).sum()),
    }


def foolbox_pixel_gap(x, transforms) -> float:
    """Largest pixel difference between Foolbox's transform_pt and robench_aligned over ``transforms``."""
    return max(
        float(
            (foolbox_warp(x, t.expand(len(x), 3)) - robench_aligned_warp(x, t.expand(len(x), 3))).abs().max()
        )
        for t in transforms
    )


def compare(model_name: str, n: int, run_attack: bool, madrylab_runs: Path | None) -> dict:
    model = create_model(load_card(model_name))
    x, y = load_tensors("mnist5k", "test", n)
    transforms = grid_transforms(**GRID).float()
    gap = foolbox_pixel_gap(x[:64], transforms)
    result: dict = {
        "model": model_name,
        "n_examples": n,
        "foolbox_transform_pt_vs_robench_aligned_max_pixel_gap": gap,
    }
    correct = {}
    for name, fn in CONVENTIONS.items():
        started = time.time()
        correct[name] = correctness(model, x, y, transforms, fn)
        result.setdefault("robust_pct", {})[name] = _pct(correct[name].all(1))
        print(
            f"  {model_name} {name}: robust {result['robust_pct'][name]}% ({time.time() - started:.0f} s)",
            file=sys.stderr,
        )
    robust = {k: v.all(1) for k, v in correct.items()}
    recorded = record_verdicts(model_name, n)
    if recorded is not None:
        result["robench_equals_record"] = bool((recorded == robust["robench"]).all())
    recorded = record_verdicts(model_name, n, madrylab_runs, MADRYLAB) if madrylab_runs else None
    if recorded is not None:  # the threat's search with warp: madrylab against this brute force
        result["madrylab_equals_record"] = bool((recorded == robust["madrylab"]).all())
    if run_attack:
        attack = foolbox_attack_robust(model, x, y)
        result["robust_pct"]["foolbox_spatial_attack"] = _pct(attack)
        same = bool((attack == robust["robench_aligned"]).all())
        result["foolbox_spatial_attack_equals_robench_aligned"] = same
    result["agreement_pct"] = {k: _pct(robust[k] == robust["robench"]) for k in CONVENTIONS if k != "robench"}
    differ = robust["madrylab"] != robust["robench"]  # which of the two steps from robench flips each verdict
    result["madrylab_disagreements_decided_by"] = {
        "order: rotate, then translate along the image axes": int(
            (differ & (robust["rotate_then_translate"] == robust["madrylab"])).sum()
        ),
        "second bilinear resampling (fractional shifts)": int(
            (differ & (robust["rotate_then_translate"] == robust["robench"])).sum()
        ),
    }
    result["disagreements"] = {
        f"{strict}_only_fails_vs_{lax}": deciding(transforms, correct[strict], correct[lax], transform_keys)
        for other in ("robench_aligned", "madrylab")
        for strict, lax in (("robench", other), (other, "robench"))
    }
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="mnist_cnn_aug30,mnist_cnn_worst_of_10")
    parser.add_argument("--n-examples", type=int, default=200)
    parser.add_argument(
        "--foolbox-attack", action="store_true", help="also run Foolbox's SpatialAttack itself"
    )
    parser.add_argument(
        "--madrylab-records",
        type=Path,
        help=f"--runs folder of 'robench eval --threat {MADRYLAB}' runs: compare them per example with the "
        "committed spatial records, and check the brute force's madrylab verdicts against them",
    )
    parser.add_argument(
        "--records-only", action="store_true", help="only the record comparison (no forwards, no Foolbox)"
    )
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()
    models = args.models.split(",")
    if args.records_only:
        if not args.madrylab_records:
            parser.error("--records-only needs --madrylab-records")
        results = [{"model": m, "records": compare_records(m, args.madrylab_records)} for m in models]
    else:
        try:
            import foolbox  # noqa: F401
        except ImportError:
            sys.exit("Foolbox is not installed: .venv/bin/pip install foolbox==3.3.4")
        results = [compare(m, args.n_examples, args.foolbox_attack, args.madrylab_records) for m in models]
        if args.madrylab_records:
            for result in results:
                result["records"] = compare_records(result["model"], args.madrylab_records)
    text = json.dumps(results, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
