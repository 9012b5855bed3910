"""One model under several threats, loaded once: what ``robench eval`` and ``robench submit`` run.

The whole request is checked before any heavy work (:func:`robench.engine.spec.check_run`: every threat's
parameters, the data, the output folder), so that a bad option fails in one line and changes nothing on
disk; then the ``torchrun`` process group is joined when there is one, and the threats are evaluated in
order with the model loaded once.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

from torch import nn

from robench.core.record import RunRecord
from robench.engine import execute
from robench.engine.loop import ShardResult
from robench.engine.spec import RunOptions, check_run, load_model, resolve
from robench.models import ModelCard
from robench.runtime import distributed
from robench.runtime.devices import resolve_device


def run_threats(
    model: str | ModelCard | nn.Module, threats: list[str], options: RunOptions
) -> Iterator[RunRecord | ShardResult]:
    """Each threat's record (or, for a job-array task, its :class:`ShardResult`), in order, as soon as it is
    done; under ``torchrun`` every rank computes, and only rank 0 yields."""
    started = time.time()
    options = check_run(model, list(threats), options)
    with distributed.process_group(resolve_device(options.device)) as device:
        options = dataclasses.replace(options, device=device)  # under torchrun: this rank's GPU
        lead = distributed.world()[0] == 0
        loaded = load_model(model, options, device)
        for name in threats:
            result = execute(resolve(loaded, name, options), started)
            started = time.time()
            if lead:
                yield result
