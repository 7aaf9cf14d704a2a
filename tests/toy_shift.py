"""A shift plugin the OOD tests load with --plugin: inverted digits, whole and restricted to
classes 0-4 (masked and not), and a broken one whose labels are outside the run's classes."""

from __future__ import annotations

import numpy as np

from vecaf_bench.api import hookimpl
from vecaf_bench.data import ArrayImages
from vecaf_bench.shifts import OODSplit, ShiftRequest, align_classes


def inverted(request: ShiftRequest) -> list[OODSplit]:
    test = request.splits.test
    assert isinstance(test, ArrayImages)
    neg = ArrayImages(255 - test.pixels, test.labels, f"{test.fingerprint}/inverted")
    # classes 0-4 only, as another dataset holding a subset of the run's classes would be
    keep = np.flatnonzero(neg.labels < 5)
    subset = ArrayImages(neg.pixels[keep], neg.labels[keep], f"{neg.fingerprint}/low")
    lower, only = align_classes(subset, request.splits.classes[:5], request.splits.classes, "low")
    return [
        OODSplit("inverted", neg, group="toy", domains=["negative"], templates=["a negative of a {}."]),
        OODSplit("inverted-low", lower, group="toy"),
        OODSplit("inverted-low-masked", lower, mask=only),
    ]


def broken(request: ShiftRequest) -> list[OODSplit]:
    test = request.splits.test
    assert isinstance(test, ArrayImages)
    return [OODSplit("bad", ArrayImages(test.pixels, test.labels + 100, "bad"))]


@hookimpl
def vecaf_bench_add_shifts():
    return {"toy": inverted, "toybroken": broken}
