"""Data-parallel training under torchrun: the process group, the wrapped model, the loaders,
and every fact about the processes (rank, world size, which one writes, the collectives).

No other module reads RANK, WORLD_SIZE or LOCAL_RANK from the environment or calls a
collective directly: they ask here.

`init_distributed` reads the environment torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK,
LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT) and joins the process group: gloo on CPU, nccl on
GPU. Without torchrun, or with one process, it returns a single-process context and every
function here falls back to plain single-process behaviour, so a command calls the same code
either way. It is not a launcher: torchrun starts the processes.

A training batch size given here is the *global* batch, the samples one optimiser step
consumes over all processes. With B divisible by the number of processes N, the training
sampler makes the k-th global batch the same set of samples for every N (see `make_loader`), so
the step count, the learning-rate schedule and, up to float rounding, the updates do not depend
on N.
"""

from __future__ import annotations

import datetime
import math
import os
import time
from collections.abc import Callable, Iterator, Sized
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Sampler
from torch.utils.data.distributed import DistributedSampler

from rnnlab.train.config import resolve_device

GLOO_DRAIN_S = 0.1  # see DistributedContext.close
# DataLoader arguments that choose the order of samples: make_loader sets them itself.
ORDER_ARGUMENTS = ("sampler", "batch_sampler", "shuffle", "generator")


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in the run; a single process when `backend` is None."""

    rank: int = 0  # this process among all of them, 0 .. world_size - 1; rank 0 writes
    world_size: int = 1  # processes in the run, over all machines
    local_rank: int = 0  # this process among those on its machine; its GPU index on CUDA
    local_world_size: int = 1  # processes on this machine
    backend: str | None = None  # 'gloo' or 'nccl' while a process group is up, else None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))  # where it trains
    owns_group: bool = False  # close() destroys the group only if init_distributed made it

    @property
    def distributed(self) -> bool:
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        """Wait until every process gets here (a no-op in a single process): e.g. after local
        rank 0 has fetched and cached the data that the others then read."""
        if self.distributed:
            dist.barrier()

    def close(self) -> None:
        """Destroy the process group that `init_distributed` created (a no-op otherwise)."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            # gloo's worker threads drop their last work objects a moment after a collective
            # completes, and doing so takes the GIL; a thread still waiting for it when the
            # interpreter starts to shut down aborts the process ("terminate called without an
            # active exception"; 6 of 22 two-process torchrun runs of a script that exits right
            # after training, 0 of 16 with this pause). Letting go of the GIL lets them finish.
            time.sleep(GLOO_DRAIN_S)

    def __enter__(self) -> DistributedContext:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _env_int(name: str, default: int | None = None) -> int:
    value = os.environ.get(name)
    if value is None:
        if default is None:
            raise ValueError(f"environment variable {name} is not set; launch with torchrun")
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {value!r}") from None


def launch_rank_and_world() -> tuple[int, int]:
    """(RANK, WORLD_SIZE) as torchrun set them for this process; (0, 1) outside torchrun."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK must be in 0..WORLD_SIZE-1, got RANK={rank}, WORLD_SIZE={world}")
    return rank, world


def use_local_gpu() -> None:
    """Under torchrun, make this rank's GPU (LOCAL_RANK) the current one, so that the device
    'cuda' (or 'auto') means it, not GPU 0 for every rank."""
    local_rank = os.environ.get("LOCAL_RANK")
    if local_rank is not None and torch.cuda.is_available():
        torch.cuda.set_device(int(local_rank) % torch.cuda.device_count())


def in_process_group() -> bool:
    """True while this process belongs to an initialised torch.distributed process group."""
    return dist.is_available() and dist.is_initialized()


def is_main_process() -> bool:
    """True for the process that reads and writes files: rank 0 of the process group; any
    process outside one (a single run, or a cross-validation fold on a torchrun rank)."""
    return not in_process_group() or dist.get_rank() == 0


def is_launch_main() -> bool:
    """True for rank 0 of torchrun's launch (or outside torchrun), before any group exists:
    the process that prints what a command is about to do."""
    return launch_rank_and_world()[0] == 0


def all_reduce_sum(sums: torch.Tensor) -> torch.Tensor:
    """Sum `sums` over all processes, in place (a no-op in a single process)."""
    if in_process_group():
        dist.all_reduce(sums, op=dist.ReduceOp.SUM)
    return sums


def nonfinite_ranks(value: float, device: torch.device) -> list[int]:
    """The ranks whose `value` (a loss) is NaN or infinite, the same list on every process.

    One small all-reduce per step: without it the other processes would go on into DDP's
    gradient all-reduce and wait for the stopped one until the collective timeout.
    """
    bad = not math.isfinite(value)
    if not in_process_group():
        return [0] if bad else []
    flags = torch.zeros(dist.get_world_size(), device=device)  # (world,)
    flags[dist.get_rank()] = float(bad)
    dist.all_reduce(flags, op=dist.ReduceOp.SUM)
    return flags.nonzero().flatten().tolist()


def min_max_over_processes(value: int, device: torch.device) -> tuple[int, int]:
    """(min, max) of an integer over all processes ((value, value) in a single process)."""
    if not in_process_group():
        return value, value
    both = torch.tensor([-value, value], dtype=torch.int64, device=device)
    dist.all_reduce(both, op=dist.ReduceOp.MAX)
    return -int(both[0]), int(both[1])


def on_main_then_everywhere(read: Callable[[], object]):
    """`read()` on rank 0, its result (or exception) sent to every process and returned/raised.

    Decisions made from rank 0's files (resume or not, which run folder) reach every process
    this way, so processes on machines without a shared file system, or a race between
    readers, cannot take different branches and hang.
    """
    payload = None
    if is_main_process():
        try:
            payload = read()
        except Exception as e:
            if not in_process_group():
                raise
            payload = e
    if in_process_group():
        box = [payload]
        dist.broadcast_object_list(box, src=0)
        payload = box[0]
    if isinstance(payload, Exception):
        raise payload
    return payload


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def init_distributed(
    device: str = "auto",
    *,
    threads: int | None = None,
    timeout: datetime.timedelta | None = None,
) -> DistributedContext:
    """Join the process group torchrun describes in the environment, or stay single-process.

    With WORLD_SIZE unset or 1: no process group; `device` resolved as TrainConfig.device is.
    Otherwise: RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT are required, LOCAL_RANK and
    LOCAL_WORLD_SIZE default to RANK and WORLD_SIZE (one machine). On CUDA ('auto' where torch
    sees a GPU, or 'cuda') the backend is nccl and this process takes GPU LOCAL_RANK as its
    current device, so TrainConfig(device='auto' or 'cuda') trains on it; on CPU it is gloo.
    An already initialised process group is adopted as it is, and close() leaves it up.

    **Arguments:** `device` 'auto', 'cpu', 'cuda' or 'cuda:N' (the last in one process only);
    `threads` torch's intra-op threads for this process; by default, under several processes,
    the machine's CPUs divided evenly among its processes (torchrun itself sets
    OMP_NUM_THREADS=1, which leaves cores idle); in a single process torch's own default is kept.
    `timeout` for collectives (torch's default when None).

    **Returns:** a DistributedContext; use it as a context manager, or call close() at the end.
    """
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    if dist.is_available() and dist.is_initialized():
        return _adopt(device, threads)
    world_size = _env_int("WORLD_SIZE", 1)
    if world_size < 1:
        raise ValueError(f"WORLD_SIZE must be at least 1, got {world_size}")
    if world_size == 1:
        if threads is not None:
            torch.set_num_threads(threads)
        return DistributedContext(device=resolve_device(device))
    if not dist.is_available():
        raise RuntimeError("this torch build has no torch.distributed; cannot join a process group")

    rank = _env_int("RANK")
    local_rank = _env_int("LOCAL_RANK", rank)
    local_world_size = _env_int("LOCAL_WORLD_SIZE", world_size)
    if not 0 <= rank < world_size:
        raise ValueError(
            f"RANK must be in [0, {world_size}) for WORLD_SIZE={world_size}, got {rank}"
        )
    if not 0 <= local_rank < local_world_size:
        raise ValueError(
            f"LOCAL_RANK must be in [0, {local_world_size}) for "
            f"LOCAL_WORLD_SIZE={local_world_size}, got {local_rank}"
        )
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise ValueError(f"environment variable {name} is not set; launch with torchrun")

    resolved = _process_device(device, local_rank, local_world_size)
    torch.set_num_threads(threads or max(1, usable_cpus() // local_world_size))
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
        backend = "nccl"
        extra = {"device_id": resolved}  # binds the communicator to this GPU up front
    else:
        backend, extra = "gloo", {}
    dist.init_process_group(
        backend, init_method="env://", rank=rank, world_size=world_size, timeout=timeout, **extra
    )
    return DistributedContext(
        rank, world_size, local_rank, local_world_size, backend, resolved, owns_group=True
    )


def _process_device(device: str, local_rank: int, local_world_size: int) -> torch.device:
    """The device of process `local_rank` of `local_world_size` on this machine."""
    resolved = resolve_device(device)
    if resolved.type != "cuda":
        return resolved
    if resolved.index is not None and local_world_size > 1:
        raise ValueError(
            f"device {device!r} names one GPU, but {local_world_size} processes share this "
            f"machine; pass 'cuda' or 'auto' and each process takes GPU LOCAL_RANK"
        )
    if resolved.index is not None:
        return resolved
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise ValueError(
            f"LOCAL_RANK {local_rank} has no GPU of its own: torch sees {count} GPU(s) on this "
            f"machine; start at most {count} processes per machine (--nproc-per-node)"
        )
    return torch.device("cuda", local_rank)


def _adopt(device: str, threads: int | None) -> DistributedContext:
    """A context for a process group someone else initialised (a test, a notebook)."""
    backend = dist.get_backend()
    rank, world_size = dist.get_rank(), dist.get_world_size()
    local_rank = _env_int("LOCAL_RANK", rank)
    local_world_size = _env_int("LOCAL_WORLD_SIZE", world_size)
    if threads is not None:
        torch.set_num_threads(threads)
    resolved = _process_device(device, local_rank, local_world_size)
    return DistributedContext(rank, world_size, local_rank, local_world_size, backend, resolved)


def wrap_model(model: nn.Module, ctx: DistributedContext) -> nn.Module:
    """`model` moved to ctx.device, and wrapped in DistributedDataParallel when distributed.

    DDP copies rank 0's parameters to every process here, so all processes start equal even if
    they built their models from different seeds. `fit` saves the unwrapped module.
    """
    model.to(ctx.device)
    if not ctx.distributed:
        return model
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


@torch.no_grad()
def broadcast_from_main(module: nn.Module, ctx: DistributedContext) -> None:
    """Copy rank 0's parameters and buffers into `module` on every process (no-op in one).

    For weights that only rank 0 can read, e.g. best.pt after `fit` when the machines share no
    file system: load them on rank 0, then call this on every process.
    """
    if not ctx.distributed:
        return
    for tensor in [*module.parameters(), *module.buffers()]:
        dist.broadcast(tensor, src=0)


def per_process_batch(batch_size: int, world_size: int) -> int:
    """The batch each of `world_size` processes loads for a global batch of `batch_size`."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if batch_size % world_size:
        raise ValueError(
            f"the global batch_size {batch_size} does not divide over {world_size} processes; "
            f"choose a multiple of {world_size} (each process loads batch_size / {world_size})"
        )
    return batch_size // world_size


def _check_loader_kwargs(kwargs: dict) -> None:
    taken = sorted(set(kwargs) & set(ORDER_ARGUMENTS))
    if taken:
        raise TypeError(
            f"the loader's order comes from shuffle, seed and ctx; do not pass {taken} "
            f"(DataLoader arguments such as num_workers or pin_memory are welcome)"
        )


def make_loader(
    dataset,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
    ctx: DistributedContext | None = None,
    drop_last: bool = False,
    **loader_kwargs,
) -> DataLoader:
    """A training DataLoader whose global batches do not depend on the number of processes.

    Every process, the single one included, draws from a DistributedSampler: a permutation of
    the dataset from (seed, epoch) (fit calls set_epoch), padded by repeating its first indices
    to a multiple of N = ctx.world_size, of which process r takes positions r, r + N, ... Each
    process loads batch_size / N samples per step, so global batch k is positions
    [k B, (k + 1) B) of that permutation, the same samples for every N. The padding (at most
    N - 1 repeated samples) lands in the last, short global batch only, which `drop_last`
    drops, and every process gets the same number of batches, as DDP requires.

    Nothing here holds RNG state: the order is a function of (seed, epoch), so a checkpoint
    resumes under any number of processes with the same data order.

    **Arguments:** `batch_size` the global batch B, divisible by N; `loader_kwargs` go to the
    DataLoader (num_workers, pin_memory, collate_fn...), except those choosing the order.
    """
    ctx = DistributedContext() if ctx is None else ctx
    _check_loader_kwargs(loader_kwargs)
    batch = per_process_batch(batch_size, ctx.world_size)
    sampler = DistributedSampler(
        dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=shuffle, seed=seed
    )
    return DataLoader(
        dataset, batch_size=batch, sampler=sampler, drop_last=drop_last, **loader_kwargs
    )


class ShardSampler(Sampler[int]):
    """Indices rank, rank + N, rank + 2N, ... of range(len(data)): each exactly once overall.

    Unlike DistributedSampler it never pads, so summed over processes an evaluation counts
    every sample once; processes may get different numbers of batches, which is fine for
    evaluation (forward passes only, sums reduced at the end) and wrong for training under DDP.
    """

    def __init__(self, data: Sized, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.indices = range(rank, len(data), world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def make_eval_loader(
    dataset,
    batch_size: int,
    *,
    ctx: DistributedContext | None = None,
    **loader_kwargs,
) -> DataLoader:
    """An evaluation DataLoader: each process scores its own shard, none padded, in order.

    `evaluate` sums loss, hits and counts over processes, so its result is that of one process
    scoring the whole dataset (loss up to float rounding). `batch_size` is about the global
    batch: each process loads ceil(batch_size / N), since here nothing depends on it exactly.
    """
    ctx = DistributedContext() if ctx is None else ctx
    _check_loader_kwargs(loader_kwargs)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    batch = -(-batch_size // ctx.world_size)
    sampler = ShardSampler(dataset, ctx.rank, ctx.world_size)
    return DataLoader(dataset, batch_size=batch, sampler=sampler, **loader_kwargs)
