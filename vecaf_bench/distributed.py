"""Several processes for one run under `torchrun` (torch.distributed), and nothing otherwise.

The rule that keeps a run on N processes the same run as on one: a step is one *global* batch
of `batch_size` pool indices from the same batch plan, split into N equal slices, with gradients
averaged by DistributedDataParallel and BatchNorm statistics taken over the global batch
(`sync_batchnorm`), so the update is the one-process update up to float summation order; each
sample's augmentation is drawn from a seed of (run seed, step, slot in the global batch), not
from a per-process stream. The selection is computed once, on rank 0, and broadcast, so every
rank trains on the same indices. Features and evaluation are split by strided shards (rank r
takes samples r, r+N, r+2N, ...: DistributedSampler's assignment without its padding, which
would count a sample twice): features are gathered on rank 0, which writes the cache and alone
holds them (the selection is its job); evaluation counts are summed. Rank 0 alone writes files,
prints and logs.

Without torchrun (no WORLD_SIZE > 1 in the environment) every helper here is a no-op and costs
nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from .errors import UserError


class PeerStopped(UserError):
    """A collective failed on this rank because another process of the run stopped: that one
    printed the reason; this one says so in a line (not a gloo/NCCL traceback) and exits 1, and
    torchrun ends the rest."""

    exit_code = 1


@contextmanager
def _collective() -> Iterator[None]:
    try:
        yield
    except RuntimeError as e:  # gloo: "Connection closed by peer"; NCCL: DistBackendError
        first = (str(e).strip().splitlines() or [type(e).__name__])[0].split(". ")[0][:300]
        first = first.replace("[", "(").replace("]", ")")  # the message is printed as rich markup
        raise PeerStopped(
            f"process {rank()} of {world()}: a collective with the other processes failed ({first}); "
            "another process of this torchrun run has probably stopped, and its error is printed above."
        ) from e


def requested() -> bool:
    """True under torchrun with more than one process (it sets WORLD_SIZE, RANK, LOCAL_RANK)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def world() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    return rank() == 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def init(device: torch.device) -> torch.device:
    """Joins the process group torchrun set up (NCCL on CUDA, gloo on the CPU) and returns this
    rank's device: cuda:LOCAL_RANK on GPUs, the CPU otherwise."""
    if not requested() or active():
        return device
    if not dist.is_available():
        raise UserError("WORLD_SIZE > 1 (torchrun), but this torch build has no torch.distributed.")
    if device.type == "cuda":
        if local_rank() >= torch.cuda.device_count():
            raise UserError(
                f"torchrun started local rank {local_rank()}, but this machine has {torch.cuda.device_count()} "
                "GPU(s). Give --nproc_per_node at most the number of GPUs."
            )
        device = torch.device("cuda", local_rank())
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise UserError(f"torchrun with --device {device.type} is not supported; use cuda (NCCL) or cpu (gloo).")
    # selection runs on rank 0 alone while the others wait in a broadcast: give it hours, not NCCL's 10 min
    dist.init_process_group(backend=backend, timeout=timedelta(hours=3))
    return device


def shutdown() -> None:
    if active():
        dist.destroy_process_group()


def check_batch_size(batch_size: int, world_size: int) -> int:
    """The per-rank slice of a global batch; a batch that does not split evenly is refused, since
    unequal slices would weight the ranks' samples unequally in the averaged gradient."""
    if batch_size % world_size:
        raise UserError(
            f"batch_size {batch_size} does not split over {world_size} processes: a step is one global batch "
            f"shared equally by the ranks. Use a batch size divisible by {world_size} (e.g. "
            f"{max(world_size, batch_size // world_size * world_size)}) or another --nproc_per_node."
        )
    return batch_size // world_size


def batch_slice(plan: np.ndarray) -> np.ndarray:
    """This rank's columns of a (steps, batch_size) batch plan."""
    n = world()
    if n == 1:
        return plan
    per = check_batch_size(plan.shape[1], n)
    r = rank()
    return plan[:, r * per : (r + 1) * per]


def shard(n: int) -> np.ndarray | None:
    """This rank's sample positions out of n (None: all of them, one process)."""
    if world() == 1:
        return None
    return np.arange(rank(), n, world(), dtype=np.int64)


def gather_rows(local: np.ndarray, n: int, out: np.ndarray | None, chunk_rows: int = 1 << 16) -> None:
    """Writes the (n, d) rows that the ranks hold in strided shards (rank r: rows r, r+N, ...; see
    `shard`) into `out` on rank 0, in pool order; the other ranks pass None and only send.

    To rank 0 alone, which writes the feature cache and selects; the others need no features, and
    ImageNet's are 3.9 GB, which every rank holding a copy would multiply by N. In chunks of about
    `chunk_rows` rows, so the buffers on the device stay small: local rows [j0, j1) of all ranks
    are the contiguous global rows [j0*N, j1*N)."""
    size = world()
    if size == 1:
        assert out is not None
        out[:] = local
        return
    per = -(-n // size)
    dim = local.shape[1]
    device = _collective_device()
    step = max(1, chunk_rows // size)
    for j0 in range(0, per, step):
        j1 = min(per, j0 + step)
        block = torch.zeros(j1 - j0, dim, dtype=torch.float32)
        have = np.asarray(local[j0:j1], dtype=np.float32)
        block[: len(have)] = torch.from_numpy(have)  # rows past the shard's end: padding, beyond row n
        block = block.to(device)
        parts = [torch.empty_like(block) for _ in range(size)] if is_main() else None
        with _collective():
            dist.gather(block, parts, dst=0)
        if parts is not None:
            assert out is not None
            lo, hi = j0 * size, min(n, j1 * size)
            out[lo:hi] = torch.stack(parts, dim=1).reshape(-1, dim)[: hi - lo].cpu().numpy()


def sum_values(values: list[float]) -> list[float]:
    """Element-wise sum over the ranks (float64)."""
    if world() == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=_collective_device())
    with _collective():
        dist.all_reduce(t)
    return t.cpu().tolist()


def any_rank(flag: bool) -> bool:
    """True on every rank when it is true on one (an interrupt must stop all ranks at the same step)."""
    if world() == 1:
        return flag
    return sum_values([1.0 if flag else 0.0])[0] > 0


def broadcast(obj: Any) -> Any:
    """Rank 0's `obj` on every rank."""
    if world() == 1:
        return obj
    box = [obj if is_main() else None]
    with _collective():
        dist.broadcast_object_list(box, src=0, device=_collective_device())
    return box[0]


def barrier() -> None:
    if world() > 1:
        with _collective():
            if dist.get_backend() == "nccl":
                dist.barrier(device_ids=[torch.cuda.current_device()])
            else:
                dist.barrier()


@contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 does the block first (it may fill a cache on disk), then the others, which find it filled."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def _collective_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
