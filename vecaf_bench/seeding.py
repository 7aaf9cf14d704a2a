"""Seeds and RNG state: the same config and seed give the same selection and metrics."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def loader_generator(seed: int = 0) -> torch.Generator:
    """A DataLoader's own generator: creating an iterator then draws from it, not from the global
    RNG, so a resumed run sees the same augmentation stream as an uninterrupted one."""
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def sample_seeds(seed: int, step: int, batch_size: int) -> np.ndarray:
    """(batch_size,) augmentation seeds of global step `step` (1-based), one per slot of the batch.

    A function of (run seed, step, slot) alone: a sample is augmented the same way whichever
    process of a torchrun run loads it, with any number of loader workers, and after a resume;
    the slots of one global batch never share a random stream."""
    return np.random.SeedSequence([int(seed), 7927, int(step)]).generate_state(batch_size).astype(np.int64)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Python's, numpy's and torch's (CPU) global RNGs seeded with `seed` inside the block, so
    the block draws from its own stream. Python's and torch's states are restored after it;
    numpy's is left as the block leaves it (saving and restoring it costs ~60 us, 20x the rest,
    per image), which no draw outside an augmentation depends on: nothing in a run reads numpy's
    global stream without seeding it first."""
    saved_py, saved_torch = random.getstate(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.default_generator.manual_seed(seed)  # torch.manual_seed would also seed every accelerator: 90 us
    try:
        yield
    finally:
        random.setstate(saved_py)
        torch.set_rng_state(saved_torch)
