"""Clean accuracy as a threat, so that it has a record and a column like every other threat."""

from __future__ import annotations

import dataclasses

from robench.threats.base import FAMILIES, Threat


@FAMILIES.register("clean")
@dataclasses.dataclass
class Clean(Threat):
    """No perturbation: robust means correctly classified."""

    argmax_verdicts = True

    def run_batch(self, model, x, y, clean_correct, ctx):
        return {"robust": clean_correct.clone()}
