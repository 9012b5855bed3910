"""Migrate run records of schema 1 to schema 2 (issue #20): the model's identity now covers everything
that decides a verdict (normalisation, class count, input size, the architecture's kwargs, the dataset the
model was built for), and the card's cosmetic fields no longer enter the hash.

Nothing is re-run and no verdict changes. For each record of schema 1, the card of the same name must pin
the same weights (sha256) with the same architecture, library, kwargs and preprocessing; then

- ``model_meta`` becomes the card's :meth:`~robench.models.ModelCard.meta` (the old fields plus the new
  identity fields),
- a fitted threat's ``details.fit.cache_key`` is recomputed, since the key names the model's fingerprint,
  which now leaves cosmetic fields out (:func:`robench.engine.fitting.model_fingerprint`),
- ``config_hash`` is recomputed from the record's protocol and ``schema_version`` set to 2.

A record whose card is gone or pins other weights is left as it is and named: it cannot be migrated
honestly (re-run it). Usage::

    python scripts/migrate_identity.py [RUNS_DIR ...]   # default: leaderboards/runs
    robench leaderboard                                  # the pages name the new hashes nowhere; check
    robench verify --all --n-examples 100                # verdicts reproduce under the new identity
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from robench.core import record as rec
from robench.datasets import dataset_info, load_tensors
from robench.engine.fitting import data_fingerprint, model_fingerprint
from robench.engine.spec import RunOptions, load_model
from robench.models import load_card
from robench.threats import create_threat

#: Fields of the old ``model_meta`` that the new one must repeat: a card that changed any of them since
#: the record was made describes another model.
KEPT = ("arch", "library", "weights_sha256", "weights_pretrained", "preprocessing")


def migrate(path: Path) -> str:
    data = json.loads(path.read_text())
    if data.get("schema_version") != 1:
        return "skipped (not schema 1)"
    old = rec.RunRecord.from_dict(data)
    card = load_card(old.model)
    meta = card.meta()
    changed = [k for k in KEPT if old.model_meta.get(k) != meta.get(k)]
    if old.model_meta.get("arch_kwargs", {}) != meta["arch_kwargs"]:
        changed.append("arch_kwargs")
    if changed:
        return f"NOT MIGRATED: card {old.model} differs in {', '.join(changed)}; re-run the record"
    data["model_meta"] = meta
    fit = data["details"].get("fit") if isinstance(data["details"], dict) else None
    if isinstance(fit, dict) and "cache_key" in fit:
        threat = create_threat(old.threat, old.dataset)
        loaded = load_model(old.model, RunOptions(), torch.device("cpu"))
        x, y = load_tensors(old.dataset, dataset_info(old.dataset).fit_split, None, None)
        fit["cache_key"] = threat.fit_key(
            model_fingerprint(loaded), old.dataset, fit["split"], data_fingerprint(x, y), fit["seed"]
        )
    data["schema_version"] = rec.SCHEMA_VERSION
    new = rec.RunRecord.from_dict(data)
    new.config_hash = rec.config_hash(rec.stated_identity(new))
    problem = rec.problem(new)
    if problem:
        return f"NOT MIGRATED: {problem}"
    rec.atomic_write_bytes(path, new.to_json().encode())
    return f"{old.config_hash} -> {new.config_hash}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path, default=[Path("leaderboards/runs")])
    args = parser.parse_args()
    failed = 0
    for folder in args.runs:
        for path in sorted(folder.glob("*/*/*.json")):
            outcome = migrate(path)
            failed += outcome.startswith("NOT")
            print(f"{path}: {outcome}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
