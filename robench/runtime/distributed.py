"""torch.distributed in one place: the process group under ``torchrun``, and how ranks share the work.

Outside ``torchrun`` (no process group) everything here is a no-op or a plain loop, so single-process
code paths and sharded ones are the same code.

How an evaluation is shared (docs/performance.md, "Scale-out"):
- The unit of work is a chunk of the evaluation subset (the engine's resumable, seeded chunks). Ranks
  take chunks from a shared queue, first come first served: a counter in the rendezvous store that every
  rank increments atomically (:class:`ChunkQueue`). Early exit makes chunks cost very different amounts
  (a chunk of already-broken examples finishes in a fraction of the time of a robust one), so a static
  split would leave ranks idle; with the queue a rank that finishes early simply takes the next chunk.
- Ranks that run out of chunks wait by polling a "done" counter in the same store, not inside a
  collective, so no collective timeout can fire however long the last chunk takes. The only collectives
  are the ones every rank reaches together: a threat's fitting in ``prepare()`` (all-reduce) and the
  final all-gather of the per-example results, issued once the store says every rank has arrived.
- A rank that crashes ends the whole job (torchrun stops the other workers), so the polling never waits
  on a dead peer; the chunk files already written make the relaunch resume.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import time
from collections.abc import Iterable, Iterator

import torch
import torch.distributed as dist

from robench.core.errors import UsageError

#: Applies to the collectives above (which every rank reaches within seconds of the others) and to the
#: first NCCL connection; generous because a slow shared filesystem can delay a rank's model loading.
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=30)
_POLL_S = 0.2

_store: dist.Store | None = None  # the rendezvous store, kept for the chunk queue
_queues = 0  # queues created so far in this process: every rank creates them in the same order


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) when no process group is initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place (no-op in a single process); returns it."""
    if world()[1] > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def launched() -> bool:
    """True in a process started by ``torchrun`` (which sets RANK, WORLD_SIZE and LOCAL_RANK)."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


def rank_device(device: torch.device) -> torch.device:
    """The device this rank uses: CUDA -> the GPU of its local rank; CPU stays CPU."""
    if device.type != "cuda" or not launched():
        return device
    local_rank = int(os.environ["LOCAL_RANK"])
    if device.index is not None and int(os.environ.get("LOCAL_WORLD_SIZE", "1")) > 1:
        raise UsageError(
            f"--device {device} pins every rank to one GPU: under torchrun use --device auto or "
            "cuda (rank i uses GPU i of its machine; restrict GPUs with CUDA_VISIBLE_DEVICES)"
        )
    if local_rank >= torch.cuda.device_count():
        raise UsageError(
            f"local rank {local_rank} has no GPU: this machine has {torch.cuda.device_count()}; "
            "set --nproc_per_node to at most that"
        )
    return torch.device("cuda", local_rank)


def cpu_threads() -> int:
    """Threads per process for CPU ranks: this machine's cores shared by its local ranks.

    Every rank using every core oversubscribes the machine (one run was 20x slower); torchrun's own
    default of one thread leaves cores idle. ``ROBENCH_THREADS`` overrides.
    """
    if "ROBENCH_THREADS" in os.environ:
        return max(1, int(os.environ["ROBENCH_THREADS"]))
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, len(os.sched_getaffinity(0)) // local)


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[torch.device]:
    """Under torchrun: join the process group (NCCL for CUDA, gloo for CPU) and yield this rank's device.

    Outside torchrun, yield ``device`` unchanged. The group is joined before any model or threat code
    runs, so a threat's ``prepare()`` can all-reduce.
    """
    global _store
    if not launched():
        yield device
        return
    device = rank_device(device)
    store, rank, world_size = next(dist.rendezvous("env://", timeout=COLLECTIVE_TIMEOUT))
    kwargs = {}
    if device.type == "cuda":
        torch.cuda.set_device(device)
        kwargs["device_id"] = device
    else:
        torch.set_num_threads(cpu_threads())
    dist.init_process_group(
        "nccl" if device.type == "cuda" else "gloo",
        store=store,
        rank=rank,
        world_size=world_size,
        timeout=COLLECTIVE_TIMEOUT,
        **kwargs,
    )
    _store = dist.PrefixStore("robench/", store)
    try:
        yield device
    finally:
        _store = None
        dist.destroy_process_group()


class ChunkQueue:
    """Chunk ids for this rank to compute, drawn from a queue shared by all ranks.

    In a single process it yields ``chunks`` in order. Every rank must create the same queues, in the
    same order, with the same ``chunks`` (the engine does: one queue per evaluation).
    """

    def __init__(self, chunks: Iterable[int]):
        global _queues
        self.chunks = list(chunks)
        self.rank, self.world_size = world()
        if self.world_size > 1 and _store is None:
            raise UsageError(
                "a process group exists but robench did not join it: start sharded runs inside "
                "robench.runtime.distributed.process_group(device) (the CLI does)"
            )
        self.key = f"q{_queues}"
        _queues += 1
        self.examples = 0  # examples finished by all ranks, as last seen by this one

    def _add(self, name: str, amount: int) -> int:
        return _store.add(f"{self.key}/{name}", amount)

    def __iter__(self) -> Iterator[int]:
        if self.world_size == 1:
            yield from self.chunks
            return
        while (i := self._add("next", 1) - 1) < len(self.chunks):
            yield self.chunks[i]

    def finished(self, n_examples: int) -> int:
        """Report ``n_examples`` more done by this rank; returns the total done by all ranks (progress)."""
        if self.world_size == 1:
            self.examples += n_examples
        else:
            self.examples = self._add("examples", n_examples)
        return self.examples

    def gather(self, obj) -> list:
        """Every rank's ``obj``, in rank order, once every rank has drained the queue."""
        if self.world_size == 1:
            return [obj]
        self._add("done", 1)
        while self._add("done", 0) < self.world_size:  # waiting outside any collective: no timeout
            time.sleep(_POLL_S)
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out
