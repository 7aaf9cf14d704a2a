"""A run's identity: the config fields that decide what it computes, and their hash.

The checkpoint and the summary store it, so that `--resume` can refuse to continue a run under a
config it did not start with (an edited seed, another run's config.yaml, a flag given with
--resume): a resumed run that finished under a different config would record numbers it never
computed. Fields outside the identity say where things are read and written, or how they are
reported: changing them cannot change the selection or the metrics on the same device.
The device is outside it too, though floats differ between devices: resuming on another device
is allowed and said (the summary records every device the run used).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

#: Config keys that do not change what a run computes; everything else is its identity.
NOT_IDENTITY = frozenset(
    {
        "out", "run_name", "cache_dir", "data_root", "device", "plugins", "trackers",
        "wandb_mode", "wandb_project", "wandb_entity", "wandb_group", "checkpoint_every",
        "train.num_workers", "test_curve",
    }
)


def flat(config: Mapping[str, Any]) -> dict[str, Any]:
    """CONFIG (a RunConfig's `to_dict()`) as dotted key -> value, the keys `--set` takes: the train
    section's keys as train.KEY; selector_options stays one value."""
    out = dict(config)
    train = out.pop("train", None) or {}
    return {**out, **{f"train.{k}": v for k, v in train.items()}}


def identity_fields(config: Mapping[str, Any]) -> dict[str, Any]:
    """The identity of CONFIG (a RunConfig's `to_dict()`), as dotted key -> value."""
    return {k: v for k, v in sorted(flat(config).items()) if k not in NOT_IDENTITY}


def identity_hash(fields: Mapping[str, Any]) -> str:
    text = json.dumps(dict(fields), sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def differences(recorded: Mapping[str, Any], now: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, recorded value, current value) for every identity key whose value changed."""
    keys = sorted(set(recorded) | set(now))
    missing = object()
    out = []
    for k in keys:
        a, b = recorded.get(k, missing), now.get(k, missing)
        if a != b:
            out.append((k, None if a is missing else a, None if b is missing else b))
    return out


def describe(diffs: list[tuple[str, Any, Any]]) -> str:
    return "; ".join(f"{k}: {a!r} when the run started, {b!r} now" for k, a, b in diffs)
