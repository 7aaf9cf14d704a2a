"""ImageNet-C corruptions of the run's test split: `--shift corruption[:NAMES[:SEVERITIES]]`.

    corruption                      the 15 ImageNet-C corruptions x severities 1-5 (75 splits)
    corruption:NAME                 one corruption, severities 1-5
    corruption:NAME:S               one split, e.g. corruption:gaussian_noise:3
    corruption:all:S (or *:S)       the 15 at severity S
    corruption:extra[:S]            the 4 extra ones (speckle_noise, gaussian_blur, spatter, saturate)
    corruption:a,b:1,5              comma lists of names and severities

The pixel operations are `corrupt_tta`'s (a port of Hendrycks' ImageNet-C code that runs on
today's NumPy; `imagecorruptions` does not). As ImageNet-C did at 224 px, each test image is
resized (shorter side) and centre-cropped to the run's input size, then corrupted and stored as
uint8. ImageNet-C's parameters are in pixels for 224 px images: at smaller sizes the blurs,
snow, spatter and elastic warps are relatively stronger and frost shows a smaller patch of its
texture; every corruption works from 4 px up.

Corrupted splits are made once and memory-mapped from the cache (`<cache>/shifts/`), keyed by
the test split's fingerprint, corruption, severity, seed and size: the runner evaluates each
split at every OOD evaluation, and glass/zoom blur cost ~10-15 ms an image even at 64 px.
Randomness (noise, frost crops, blur angles, ...) is drawn from NumPy's global state, seeded
per image from (seed, corruption, severity, index) and restored afterwards, so a split is the
same in every run with that seed and the run's own random streams are untouched.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vecaf_bench.api import (
    ImageSource,
    OODSplit,
    ShiftRequest,
    UserError,
    default_cache_dir,
    hookimpl,
    unknown,
)

# ImageNet-C's 15, in its order (noise, blur, weather, digital), and its 4 extra corruptions
STANDARD: tuple[str, ...] = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog",
    "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)  # fmt: skip
EXTRA: tuple[str, ...] = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
MIN_SIZE = 4  # pixelate at severity 5 shrinks to a quarter: below 4 px that is 0 px
FORMAT = 1  # bump when preparing or storing changes, so that old cache entries stop matching

# the target domain(s) each corruption puts the images in, and the prompts VeCAF's text-domain
# augmentation reads for them (config text_domain: auto)
PROMPTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "gaussian_noise": (("noise",), ("a noisy photo of a {}.", "a grainy photo of a {}.")),
    "shot_noise": (("noise",), ("a noisy photo of a {}.", "a grainy low-light photo of a {}.")),
    "impulse_noise": (("noise",), ("a noisy photo of a {}.", "a photo of a {} with salt-and-pepper noise.")),
    "speckle_noise": (("noise",), ("a noisy photo of a {}.", "a speckled photo of a {}.")),
    "defocus_blur": (("blur",), ("a blurry photo of a {}.", "an out-of-focus photo of a {}.")),
    "glass_blur": (("blur",), ("a blurry photo of a {}.", "a photo of a {} seen through frosted glass.")),
    "motion_blur": (("blur",), ("a blurry photo of a {}.", "a motion-blurred photo of a {}.")),
    "zoom_blur": (("blur",), ("a blurry photo of a {}.", "a zoom-blurred photo of a {}.")),
    "gaussian_blur": (("blur",), ("a blurry photo of a {}.", "a smoothed, blurry photo of a {}.")),
    "snow": (("snow",), ("a photo of a {} in the snow.", "a photo of a {} in a snowstorm.")),
    "frost": (("frost",), ("a photo of a {} through a frosted window.", "a photo of a {} covered in frost.")),
    "fog": (("fog",), ("a photo of a {} in the fog.", "a hazy photo of a {}.")),
    "spatter": (("spatter",), ("a photo of a {} spattered with mud.", "a dirty photo of a {}.")),
    "brightness": (("brightness",), ("a bright photo of a {}.", "an overexposed photo of a {}.")),
    "contrast": (("low contrast",), ("a low-contrast photo of a {}.", "a faded photo of a {}.")),
    "saturate": (("saturation",), ("a photo of a {} with oversaturated colors.", "a washed-out photo of a {}.")),
    "elastic_transform": (("distortion",), ("a distorted photo of a {}.", "a warped photo of a {}.")),
    "pixelate": (("pixelation",), ("a pixelated photo of a {}.", "a low-resolution photo of a {}.")),
    "jpeg_compression": (("jpeg",), ("a jpeg-compressed photo of a {}.", "a blocky, compressed photo of a {}.")),
}  # fmt: skip
CATEGORY: dict[str, str] = {
    **dict.fromkeys(("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"), "noise"),
    **dict.fromkeys(("defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "gaussian_blur"), "blur"),
    **dict.fromkeys(("snow", "frost", "fog", "spatter"), "weather"),
    **dict.fromkeys(("brightness", "contrast", "saturate", "elastic_transform", "pixelate", "jpeg_compression"),
                    "digital"),
}  # fmt: skip
GRAMMAR = (
    "Write corruption[:NAMES[:SEVERITIES]]: NAMES is all (or *), extra, or a comma list of corruptions; "
    "SEVERITIES is 1-5 or a comma list of them (default: all five). E.g. corruption:gaussian_noise:3."
)

_LOCK = threading.Lock()  # the global NumPy state is process-wide: one seeded corruption at a time


# -- the spec ------------------------------------------------------------------------------------
def parse_spec(spec: str) -> list[tuple[str, int]]:
    """'gaussian_noise,fog:3' -> [('gaussian_noise', 3), ('fog', 3)]; '' -> the 15 x 5."""
    parts = [p.strip() for p in str(spec).split(":")] if str(spec).strip() else []
    if len(parts) > 2:
        raise UserError(f"corruption shift 'corruption:{spec}' has {len(parts)} parts after the name. {GRAMMAR}")
    names = _names(parts[0] if parts else "")
    severities = _severities(parts[1] if len(parts) > 1 else "", spec)
    return [(n, s) for n in names for s in severities]


def _names(text: str) -> list[str]:
    out: list[str] = []
    for token in (t.strip() for t in text.split(",")) if text else ["all"]:
        key = token.lower().replace("-", "_").replace(" ", "_")
        if key in ("all", "*", "standard"):
            out += STANDARD
        elif key == "extra":
            out += EXTRA
        elif key in PROMPTS:
            out.append(key)
        else:
            raise unknown("corruption", token, [*STANDARD, *EXTRA, "all", "extra"], hint=GRAMMAR)
    return list(dict.fromkeys(out))


def _severities(text: str, spec: str) -> list[int]:
    if text in ("", "*", "all"):
        return list(SEVERITIES)
    out: list[int] = []
    for token in (t.strip() for t in text.split(",")):
        try:
            value = int(token)
        except ValueError:
            value = 0
        if value not in SEVERITIES:
            raise UserError(
                f"corruption severity '{token}' (in 'corruption:{spec}') is not one of "
                f"{', '.join(map(str, SEVERITIES))}. {GRAMMAR}"
            )
        out.append(value)
    return list(dict.fromkeys(out))


# -- one image -----------------------------------------------------------------------------------
def prepare(image: Image.Image, size: int) -> np.ndarray:
    """(size, size, 3) uint8: shorter side resized to `size`, centre-cropped, as ImageNet-C's
    Resize + CenterCrop before corrupting."""
    image = image.convert("RGB")
    w, h = image.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) != (w, h):
        image = image.resize((nw, nh), Image.Resampling.BILINEAR)
    left, top = (nw - size) // 2, (nh - size) // 2
    return np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)


def _seed_words(seed: int, name: str, severity: int, index: int) -> np.ndarray:
    words = [int(seed) & 0xFFFFFFFFFFFFFFFF, zlib.crc32(name.encode()), int(severity), int(index)]
    return np.random.SeedSequence(words).generate_state(8)


@contextlib.contextmanager
def _seeded(seed: int, name: str, severity: int, index: int) -> Iterator[None]:
    """NumPy's global state seeded for one image, and put back afterwards. corrupt_tta draws
    from that state, except impulse noise: skimage's `random_noise` makes its own unseeded
    generator, so it is handed one drawn from the seeded state (no Python `random`, no cv2 RNG
    is used)."""
    from corrupt_tta import corruptions

    with _LOCK:
        state = np.random.get_state()
        original = getattr(corruptions, "random_noise", None)
        try:
            np.random.seed(_seed_words(seed, name, severity, index))
            if original is not None:

                def seeded_noise(image: Any, *args: Any, rng: Any = None, **kwargs: Any) -> Any:
                    rng = np.random.default_rng(np.random.randint(0, 2**31 - 1)) if rng is None else rng
                    return original(image, *args, rng=rng, **kwargs)

                corruptions.random_noise = seeded_noise
            yield
        finally:
            if original is not None:
                corruptions.random_noise = original
            np.random.set_state(state)


def corrupt_image(x: np.ndarray, name: str, severity: int, seed: int = 0, index: int = 0) -> np.ndarray:
    """`x` (H, W, 3) uint8 corrupted: the same (x, name, severity, seed, index) give the same
    image; uint8 by truncation, as ImageNet-C stored its images."""
    from corrupt_tta import corrupt

    if name not in PROMPTS:
        raise unknown("corruption", name, PROMPTS, hint=GRAMMAR)
    if min(x.shape[:2]) < MIN_SIZE:
        raise UserError(
            f"corruption '{name}' needs images of at least {MIN_SIZE} px; got {x.shape[1]}x{x.shape[0]}. "
            "Run with a larger --image-size."
        )
    with _seeded(seed, name, severity, index):
        out = np.asarray(corrupt(np.ascontiguousarray(x), severity=int(severity), corruption_name=name))
    if out.shape != x.shape:
        raise RuntimeError(f"corrupt_tta's {name} returned shape {out.shape} for an image of shape {x.shape}")
    return np.clip(out, 0, 255).astype(np.uint8)


# -- a corrupted split, cached on disk -----------------------------------------------------------
def _open(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """The cached array, or None when it is missing, damaged or of another shape."""
    if not path.is_file():
        return None
    try:
        arr = np.load(path, mmap_mode="r")
    except (ValueError, OSError):
        return None
    return arr if arr.shape == shape and arr.dtype == np.uint8 else None


def _write(path: Path, shape: tuple[int, ...], meta: Mapping[str, Any], fill: Callable[[np.ndarray], None]) -> None:
    """Fill a memory-mapped .npy next to `path` and rename it into place only when complete, so
    that an interrupted build never leaves a file a later run would trust."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{threading.get_ident()}.npy.tmp")
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        fill(out)
        out.flush()
        del out
        os.replace(tmp, path)
        meta_tmp = tmp.with_suffix(".json.tmp")
        meta_tmp.write_text(json.dumps(dict(meta), indent=2, default=str))
        os.replace(meta_tmp, path.with_suffix(".json"))
    finally:
        if tmp.exists():
            tmp.unlink()


def _corrupt_tta_version() -> str:
    import corrupt_tta

    return str(getattr(corrupt_tta, "__version__", "?"))


class CorruptedImages:
    """An ImageSource: `source` corrupted with one (corruption, severity) at `size` px. The
    pixels live in a memory-mapped cache file, made by `build()` (or on first access); pickling
    leaves the mapping behind, so loader workers re-open the file instead of copying it."""

    def __init__(
        self, source: ImageSource, corruption: str, severity: int, seed: int, size: int, root: str | Path
    ) -> None:
        self.source = source
        self.corruption, self.severity, self.seed, self.size = corruption, int(severity), int(seed), int(size)
        self.labels = np.asarray(source.labels, dtype=np.int64).copy()
        self.fingerprint = f"{source.fingerprint}/corruption:{corruption}:{severity}/seed{seed}/{size}px"
        self.meta = {
            "kind": "corruption", "format": FORMAT, "source": source.fingerprint, "n": len(source),
            "corruption": corruption, "severity": self.severity, "seed": self.seed, "size": self.size,
            "corrupt_tta": _corrupt_tta_version(),
        }  # fmt: skip
        from vecaf_bench.api import cache_key  # imports torch: not when the plugin is loaded

        self.path = Path(root) / f"{cache_key(**self.meta)}.npy"
        self.shape = (len(source), self.size, self.size, 3)
        self._pixels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_pixels": None}

    def cached(self) -> bool:
        if self._pixels is None:
            self._pixels = _open(self.path, self.shape)
        return self._pixels is not None

    @property
    def pixels(self) -> np.ndarray:
        if not self.cached():
            self.build()
        assert self._pixels is not None
        return self._pixels

    def image(self, index: int) -> Image.Image:
        return Image.fromarray(np.asarray(self.pixels[index]))

    def build(self, clean: np.ndarray | None = None, on_image: Callable[[], None] | None = None) -> None:
        """Corrupt every image (from `clean`, the prepared source, when given) into the cache."""

        def fill(out: np.ndarray) -> None:
            for i in range(len(self)):
                x = clean[i] if clean is not None else prepare(self.source.image(i), self.size)
                out[i] = corrupt_image(np.asarray(x), self.corruption, self.severity, self.seed, i)
                if on_image:
                    on_image()

        _write(self.path, self.shape, self.meta, fill)
        self._pixels = _open(self.path, self.shape)
        if self._pixels is None:
            raise RuntimeError(f"the corrupted split just written to '{self.path}' could not be read back")


def _clean(source: ImageSource, size: int, root: Path, on_image: Callable[[], None] | None = None) -> np.ndarray:
    """The source prepared at `size` (decoded, resized, cropped) once for all the splits that
    are built from it, cached beside them."""
    from vecaf_bench.api import cache_key  # imports torch: not when the plugin is loaded

    meta = {"kind": "prepared", "format": FORMAT, "source": source.fingerprint, "n": len(source), "size": size}
    path = root / f"{cache_key(**meta)}.npy"
    shape = (len(source), size, size, 3)
    arr = _open(path, shape)
    if arr is None:

        def fill(out: np.ndarray) -> None:
            for i in range(len(source)):
                out[i] = prepare(source.image(i), size)
                if on_image:
                    on_image()

        _write(path, shape, meta, fill)
        arr = _open(path, shape)
        assert arr is not None
    return arr


def build_all(splits: Sequence[CorruptedImages], root: Path, console: Any = None) -> dict[str, Any]:
    """Build the splits that are not cached yet, with one progress bar; returns what was done."""
    from rich.console import Console

    from vecaf_bench.api import make_progress

    console = console or Console(stderr=True, emoji=False)
    todo = [s for s in splits if not s.cached()]
    start = time.perf_counter()
    if todo:
        source = todo[0].source
        with make_progress(console) as progress:
            task = progress.add_task("corruption", total=len(source) * (len(todo) + 1), info="prepare")
            clean = _clean(source, todo[0].size, root, lambda: progress.advance(task))
            progress.update(task, completed=len(source))
            for s in todo:
                progress.update(task, info=f"{s.corruption}:{s.severity}")
                s.build(clean, lambda: progress.advance(task))
    seconds = time.perf_counter() - start
    reused = len(splits) - len(todo)
    size_mb = sum(int(np.prod(s.shape)) for s in splits) / 2**20
    console.print(
        f"corruption: {len(splits)} split(s) of {len(splits[0]) if splits else 0} images at "
        f"{splits[0].size if splits else '?'} px ({size_mb:.0f} MiB): {len(todo)} made in {seconds:.1f} s, "
        f"{reused} reused from {root}"
    )
    return {"built": len(todo), "reused": reused, "seconds": seconds}


# -- the shift -----------------------------------------------------------------------------------
def corruption_shift(request: ShiftRequest) -> list[OODSplit]:
    """The run's test split under the corruptions the spec names, one OOD split each."""
    pairs = parse_spec(request.spec)
    size = int(request.image_size or request.splits.default_image_size or 224)
    if size < MIN_SIZE:
        raise UserError(f"corruption shifts need an input size of at least {MIN_SIZE} px; the run's is {size} px.")
    root = Path(request.cache_dir or default_cache_dir()) / "shifts"
    test = request.splits.test
    images = [CorruptedImages(test, n, s, request.seed, size, root) for n, s in pairs]
    build_all(images, root, request.console)
    out = []
    for img in images:
        domains, templates = PROMPTS[img.corruption]
        standard = img.corruption in STANDARD
        out.append(
            OODSplit(
                name=f"corruption:{img.corruption}:{img.severity}",
                images=img,
                group="corruption" if standard else "corruption-extra",
                domains=list(domains),
                templates=list(templates),
                info={
                    "corruption": img.corruption,
                    "severity": img.severity,
                    "category": CATEGORY[img.corruption],
                    "set": "imagenet-c" if standard else "imagenet-c extra",
                    "size": size,
                    "seed": request.seed,
                    "cache": str(img.path),
                },
            )
        )
    return out


@hookimpl
def vecaf_bench_add_shifts() -> Mapping[str, Any]:
    return {"corruption": corruption_shift}
