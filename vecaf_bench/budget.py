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
