"""Conformance kits for plugins: call them from your plugin's own tests.

    from vecaf_bench.testing import check_selector
    check_selector(MySelector, options={"chunk": 64}, name="mine")
"""

from __future__ import annotations

from .plugins import (
    ENGINE_FILES,
    LIFE_CYCLE_HOOKS,
    check_backbone,
    check_backbone_attributes,
    check_backbone_classifier,
    check_backbone_deterministic,
    check_backbone_embed,
    check_backbone_forward,
    check_dataset,
    check_dataset_fingerprints,
    check_dataset_images,
    check_dataset_labels,
    check_dataset_splits,
    check_shift,
    check_shift_splits,
    check_text_encoder,
    check_text_encoder_attributes,
    check_text_encoder_batch_invariant,
    check_text_encoder_deterministic,
    check_text_encoder_empty,
    check_text_encoder_output,
    check_tracker,
    check_tracker_hooks,
    check_tracker_life_cycle,
    check_tracker_resume,
    normalised_batch,
)
from .selectors import *  # noqa: F403
from .selectors import __all__ as _selector_checks

__all__ = [
    *_selector_checks,
    "ENGINE_FILES",
    "LIFE_CYCLE_HOOKS",
    "check_backbone",
    "check_backbone_attributes",
    "check_backbone_classifier",
    "check_backbone_deterministic",
    "check_backbone_embed",
    "check_backbone_forward",
    "check_dataset",
    "check_dataset_fingerprints",
    "check_dataset_images",
    "check_dataset_labels",
    "check_dataset_splits",
    "check_shift",
    "check_shift_splits",
    "check_text_encoder",
    "check_text_encoder_attributes",
    "check_text_encoder_batch_invariant",
    "check_text_encoder_deterministic",
    "check_text_encoder_empty",
    "check_text_encoder_output",
    "check_tracker",
    "check_tracker_hooks",
    "check_tracker_life_cycle",
    "check_tracker_resume",
    "normalised_batch",
]
