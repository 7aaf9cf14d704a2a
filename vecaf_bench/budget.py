"""Budget accounting: label budget B (samples) and batch budget T (optimizer steps).

Both are split over rounds so that the parts sum to the whole exactly; every selector in a
comparison gets the same T.
"""

from __future__ import annotations

from .config import parse_label_budget
from .errors import UserError


def split_evenly(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if r < extra else 0) for r in range(parts)]


def resolve_label_budget(value: str | int | float, pool_size: int) -> int:
    kind, num = parse_label_budget(value)
    count = int(round(num * pool_size)) if kind == "fraction" else int(num)
    if kind == "fraction" and count < 1:
        raise UserError(
            f"label budget '{value}' of a pool of {pool_size} images is less than one image. "
            "Raise the fraction or give a count."
        )
    if count > pool_size:
        raise UserError(
            f"label budget {count} is larger than the pool ({pool_size} images). "
            f"Give at most {pool_size}, or a fraction such as 5%."
        )
    return count


def check_rounds(label_budget: int, batch_budget: int, rounds: int, whole_pool: bool) -> None:
    """Refuses ROUNDS that leave a round empty: budgets are split evenly over the rounds, so more
    rounds than labels gives rounds that pick no image, and more rounds than optimizer steps gives
    rounds that train nothing; both would be recorded as rounds that never happened. A whole-pool
    selector takes every image in round 0, so only its steps are checked."""
    short = [] if whole_pool or rounds <= label_budget else [("label_budget", label_budget, "pick no image")]
    if rounds > batch_budget:
        short.append(("batch_budget", batch_budget, "train for no optimizer step"))
    if not short:
        return
    fit = min(n for _, n, _ in short)
    given = " and ".join(f"{key} {n}" for key, n, _ in short)
    empty = " and ".join(what for _, _, what in short)
    flags = " and ".join(f"a larger --{key.replace('_', '-')}" for key, _, _ in short)
    raise UserError(
        f"--rounds {rounds} with {given} leaves rounds that {empty} (each budget is split evenly over the rounds): "
        f"use --rounds {fit} or fewer, or {flags}."
    )
