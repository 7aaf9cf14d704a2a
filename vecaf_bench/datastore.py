"""Where named datasets live on disk, how they are found, indexed and prepared.

The core names no dataset. A dataset plugin describes its on-disk form with a `DataSource`
(candidate folders under the data root, a check that a folder really holds it, the official
download page and archives) and registers a `NamedDataset` (that source plus its loader) as the
factory. The core then gives every such dataset the same behaviour:

- the data root: `--data-root` (config `data_root`), else `$VECAF_BENCH_DATA`, else
  `~/.cache/vecaf-bench/data` (`$XDG_CACHE_HOME` honoured). It does not follow
  `$VECAF_BENCH_CACHE`: the feature cache is disposable, the data is not.
- a missing dataset is one paragraph naming every path looked at, why each one did not do,
  the download page and `vecaf-bench data prepare NAME --from PATH_OR_URL`;
- `prepare_dataset` downloads or copies an archive, checks it, unpacks it in a temporary folder
  inside the data root and renames the dataset folder into place (never a half-unpacked folder);
- `index_folders` lists a folder of class folders once and caches the file list (with the
  images that failed to open) keyed by the root, so that 1.28M files are not listed again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, overload

import numpy as np
from PIL import Image
from rich.console import Console

from .config import default_cache_dir
from .data import DatasetRequest, DatasetSplits, FileImages, stratified_split
from .errors import UserError
from .results import atomic_path

DATA_ENV = "VECAF_BENCH_DATA"
MANIFEST = "vecaf-bench-data.json"
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
SPLIT_SEED = 0  # splits made for datasets without a test split: the same for every run seed
TEST_FILES_LISTED = 10_000  # up to this many test files are listed by name in `info`


# -- data root --------------------------------------------------------------------------------
def default_data_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vecaf-bench" / "data"


def resolve_data_root(explicit: str | Path | None = None) -> tuple[Path, str]:
    """The data root and where it came from (for messages)."""
    if explicit:
        return Path(explicit).expanduser(), "--data-root"
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser(), f"${DATA_ENV}"
    return default_data_root(), f"the default; set --data-root or ${DATA_ENV} to use another"


# -- named datasets ---------------------------------------------------------------------------
Check = Callable[[Path], str | None]  # None: the path holds the dataset; else why it does not


@dataclass(frozen=True)
class DataSource:
    """How a named dataset looks on disk and where it comes from."""

    name: str
    folders: tuple[str, ...]  # candidates under the data root; `data prepare` puts it at the first
    check: Check
    homepage: str
    layout: str  # what the folder holds, for messages ("one folder per WordNet id")
    archives: tuple[str, ...] = ()  # official archive URLs; the first is `data prepare`'s default
    note: str = ""  # anything else the user must know (ImageNet's flat val)
    # MD5s of the official archives by file name, read when an archive is checked (the plugin
    # takes them from where they are published, e.g. torchvision's records), or None
    checksums: Callable[[], Mapping[str, str]] | None = None

    def candidates(self, data_root: Path) -> list[Path]:
        return [data_root / f for f in self.folders]

    def find(self, data_root: Path) -> tuple[Path | None, list[tuple[Path, str]]]:
        """The first candidate that holds the dataset, and why each one looked at does not."""
        looked: list[tuple[Path, str]] = []
        for p in self.candidates(data_root):
            why = "missing" if not (p.exists() or p.is_symlink()) else self.check(p)
            if why is None:
                return p, looked
            looked.append((p, why))
        return None, looked

    def locate(self, data_root: str | Path | None) -> Path:
        root, origin = resolve_data_root(data_root)
        found, looked = self.find(root)
        if found is None:
            raise missing_data_error(self, root, origin, looked, explicit_root=bool(data_root))
        return found


def missing_data_error(
    source: DataSource, root: Path, origin: str, looked: Sequence[tuple[Path, str]], explicit_root: bool = False
) -> UserError:
    where = "; ".join(f"{p} ({why})" for p, why in looked)
    archives = f" (archive: {', '.join(source.archives)})" if source.archives else ""
    root_flag = f" --data-root {root}" if explicit_root else ""
    example = f", e.g. --from {source.archives[0]}" if source.archives else ""
    note = f" {source.note}" if source.note else ""
    return UserError(
        f"dataset '{source.name}' was not found under the data root '{root}' ({origin}). Looked in: {where}. "
        f"It is {source.layout}. Download it from {source.homepage}{archives}, then run "
        f"`vecaf-bench data prepare {source.name} --from PATH_OR_URL{root_flag}` (the downloaded archive or "
        f"folder, or the archive's URL{example}): it checks the archive and unpacks it into "
        f"{source.candidates(root)[0]}. Or point --data-root (or ${DATA_ENV}) at the folder that holds it.{note}"
    )


@dataclass(frozen=True)
class NamedDataset:
    """A dataset plugin's factory: finds the data under the data root, then loads it.

    `vecaf-bench data prepare/list` read `source` from the registered factory."""

    source: DataSource
    load: Callable[[DatasetRequest, Path], DatasetSplits]

    def __call__(self, request: DatasetRequest) -> DatasetSplits:
        return self.load(request, self.source.locate(request.data_root))


def subfolders(path: Path) -> list[str]:
    """Names of the visible sub-folders (one listing of `path`, not of what is inside them)."""
    try:
        with os.scandir(path) as it:
            return sorted(e.name for e in it if not e.name.startswith(".") and e.is_dir())
    except OSError:
        return []


# -- the file index ---------------------------------------------------------------------------
@dataclass(eq=False)
class PathTable(Sequence[Path]):
    """File paths as one UTF-8 buffer and offsets, not a list of 1.28M `Path` objects: it pickles
    in one copy to DataLoader workers, and subsets share the buffer."""

    root: str
    blob: np.ndarray  # uint8: the relative paths back to back
    offsets: np.ndarray  # int64 (entries + 1,)
    rows: np.ndarray  # int64: which entries this table holds, in order

    @classmethod
    def from_strings(cls, root: str | Path, relative: Sequence[str]) -> PathTable:
        encoded = [s.encode("utf-8") for s in relative]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(e) for e in encoded], out=offsets[1:])
        blob = np.frombuffer(b"".join(encoded), dtype=np.uint8).copy()
        return cls(str(root), blob, offsets, np.arange(len(encoded), dtype=np.int64))

    def __len__(self) -> int:
        return len(self.rows)

    def relative(self, i: int) -> str:
        r = int(self.rows[i])
        return self.blob[self.offsets[r] : self.offsets[r + 1]].tobytes().decode("utf-8")

    @overload
    def __getitem__(self, i: int) -> Path: ...

    @overload
    def __getitem__(self, i: slice) -> PathTable: ...

    def __getitem__(self, i: int | slice) -> Path | PathTable:
        if isinstance(i, slice):
            return self.take(np.arange(len(self))[i])
        return Path(os.path.join(self.root, self.relative(i)))

    def __iter__(self) -> Iterator[Path]:
        for i in range(len(self)):
            yield self[i]

    def take(self, indices: np.ndarray) -> PathTable:
        return PathTable(self.root, self.blob, self.offsets, self.rows[np.asarray(indices, dtype=np.int64)])


@dataclass
class FileIndex:
    """The image files of a folder of class folders, with labels; images that failed to open
    are left out and listed in `bad` (absolute path and reason)."""

    root: Path
    files: PathTable
    labels: np.ndarray
    bad: list[str]
    fingerprint: str  # changes when a file is added, removed, resized or touched
    origin: str = "built"  # built | cache (read from disk) | memory (this process)

    def images(self, fingerprint: str, rows: np.ndarray | None = None) -> FileImages:
        """All the files, or those at `rows`, as an image source (lazily decoded)."""
        if rows is None:
            return FileImages(self.files, self.labels, fingerprint)
        return FileImages(self.files.take(rows), self.labels[rows], fingerprint)


_INDEX_VERSION = 1
_FRESH_S = 2.0  # a folder changed this close to the index build may hide a change in the same tick
_MEMO: dict[str, tuple[FileIndex, list[tuple[str, int]], float]] = {}


def _index_key(root: Path, folders: Mapping[str, int], verify: bool) -> str:
    blob = json.dumps([_INDEX_VERSION, str(root), list(folders.items()), verify])
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _stamp_ok(root: Path, dirs: Sequence[tuple[str, int]], built_at: float, fresh_s: float = _FRESH_S) -> bool:
    """The cheap check: every folder listed at build time still has the mtime it had then (a new,
    removed or renamed file changes its folder's mtime). On disk, mtimes within `fresh_s` of the
    build are not trusted (a coarse file-system clock could hide a change made right after the
    listing): such an index is rebuilt once more, later."""
    newest = 0
    for rel, mtime in dirs:
        try:
            now = os.stat(os.path.join(root, rel)).st_mtime_ns
        except OSError:
            return False
        if now != mtime:
            return False
        newest = max(newest, now)
    return fresh_s <= 0 or newest / 1e9 < built_at - fresh_s


def _list_folder(root: Path, rel: str, dirs: list[tuple[str, int]], out: list[tuple[str, int, int]]) -> None:
    """Appends (relative path, size, mtime_ns) of the image files under root/rel, sorted, and
    records every folder visited with its mtime."""
    path = os.path.join(root, rel)
    try:
        st = os.stat(path)
    except OSError:
        return  # an absent class folder: the root's mtime notices it appearing
    dirs.append((rel, st.st_mtime_ns))
    with os.scandir(path) as it:
        entries = sorted(it, key=lambda e: e.name)
    for e in entries:
        if e.name.startswith("."):
            continue
        child = f"{rel}/{e.name}" if rel else e.name
        if e.is_dir():
            _list_folder(root, child, dirs, out)
        elif e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES:
            s = e.stat()
            out.append((child, s.st_size, s.st_mtime_ns))


def _check_image(path: str) -> str | None:
    try:
        with Image.open(path) as im:
            im.verify()
    except Exception as e:  # PIL raises many types for a damaged file
        return type(e).__name__
    return None


def _progress_console() -> Console:
    return Console(stderr=True, emoji=False)


def index_folders(
    root: str | Path,
    folders: Mapping[str, int],
    *,
    cache_dir: str | Path | None = None,
    verify: bool = True,
    what: str = "",
) -> FileIndex:
    """The image files under `root/<folder>` for each folder (label: its value), listed and
    checked with PIL once, then cached in `<cache_dir>/index/` (default: the feature cache) and
    in memory; a later call re-lists only when a folder's mtime changed."""
    root = Path(root)
    key = _index_key(root.resolve(), folders, verify)
    cache_root = Path(cache_dir) if cache_dir else default_cache_dir()
    cache_file = cache_root / "index" / f"{key}.npz"
    memo = _MEMO.get(key)
    if memo is not None and _stamp_ok(root, memo[1], memo[2], fresh_s=0.0):
        memo[0].origin = "memory"
        return memo[0]
    loaded = _read_index(cache_file, root)
    if loaded is not None and _stamp_ok(root, loaded[1], loaded[2]):
        _MEMO[key] = loaded
        return loaded[0]
    index, dirs, built_at = _build_index(root, folders, verify, what or str(root))
    _MEMO[key] = (index, dirs, built_at)
    _write_index(cache_file, index, dirs, built_at)
    return index


def _build_index(
    root: Path, folders: Mapping[str, int], verify: bool, what: str
) -> tuple[FileIndex, list[tuple[str, int]], float]:
    built_at = time.time()
    dirs: list[tuple[str, int]] = [("", os.stat(root).st_mtime_ns)]
    files: list[tuple[str, int, int]] = []
    labels: list[int] = []
    big = len(folders) >= 100
    with _maybe_progress(big, f"listing {what}", len(folders)) as advance:
        for rel, label in folders.items():
            before = len(files)
            _list_folder(root, rel, dirs, files)
            labels.extend([label] * (len(files) - before))
            advance(1)
    bad_reason: list[str | None] = [None] * len(files)
    if verify and files:
        paths = [os.path.join(root, f[0]) for f in files]
        with _maybe_progress(len(files) >= 5000, f"checking {what}", len(files)) as advance:
            if len(files) >= 1000:
                with ThreadPoolExecutor(max_workers=min(16, 2 * (os.cpu_count() or 1))) as pool:
                    for i, why in enumerate(pool.map(_check_image, paths, chunksize=256)):
                        bad_reason[i] = why
                        advance(1)
            else:
                for i, p in enumerate(paths):
                    bad_reason[i] = _check_image(p)
                    advance(1)
    keep = [i for i, why in enumerate(bad_reason) if why is None]
    bad = [f"{root / files[i][0]} ({why})" for i, why in enumerate(bad_reason) if why is not None]
    h = hashlib.sha256()
    for i in keep:
        rel, size, mtime = files[i]
        h.update(f"{rel}|{size}|{mtime}|{labels[i]}\n".encode())
    index = FileIndex(
        root=root,
        files=PathTable.from_strings(root, [files[i][0] for i in keep]),
        labels=np.asarray([labels[i] for i in keep], dtype=np.int64),
        bad=bad,
        fingerprint=h.hexdigest()[:16],
        origin="built",
    )
    return index, dirs, built_at


class _maybe_progress:
    """A rich progress bar on stderr for the big listings; a no-op for small ones."""

    def __init__(self, show: bool, description: str, total: int) -> None:
        self.show, self.description, self.total = show, description, total
        self._progress: Any = None

    def __enter__(self) -> Callable[[int], None]:
        if not self.show:
            return lambda n: None
        from .progress import make_progress

        self._progress = make_progress(_progress_console())
        self._progress.start()
        task = self._progress.add_task(self.description, total=self.total, info="")
        return lambda n: self._progress.advance(task, n)

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.stop()


def _read_index(path: Path, root: Path) -> tuple[FileIndex, list[tuple[str, int]], float] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes().decode("utf-8"))
            files = PathTable(str(root), z["blob"], z["offsets"], np.arange(len(z["offsets"]) - 1, dtype=np.int64))
            labels = z["labels"].astype(np.int64)
    except (OSError, ValueError, KeyError):
        return None  # absent or damaged: rebuilt
    if meta.get("version") != _INDEX_VERSION or len(labels) != len(files):
        return None
    index = FileIndex(root, files, labels, list(meta["bad"]), meta["fingerprint"], origin="cache")
    return index, [(d, int(m)) for d, m in meta["dirs"]], float(meta["built_at"])


def _write_index(path: Path, index: FileIndex, dirs: list[tuple[str, int]], built_at: float) -> None:
    meta = dict(
        version=_INDEX_VERSION,
        root=str(index.root),
        dirs=dirs,
        bad=index.bad,
        fingerprint=index.fingerprint,
        built_at=built_at,
        files=len(index.files),
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(
                f,
                blob=index.files.blob,
                offsets=index.files.offsets,
                labels=index.labels.astype(np.int32),
                meta=np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8),
            )
    except OSError as e:
        print(
            f"warning: could not cache the file index in {path.parent} ({e}); it is rebuilt next time.", file=sys.stderr
        )


def forget_indexes() -> None:
    """Drops the in-memory indexes (the on-disk cache stays)."""
    _MEMO.clear()


def report_corrupt(bad: Sequence[str], on_corrupt: str) -> None:
    """Images that failed to open: fatal with on_corrupt=error, else a warning naming them."""
    if bad and on_corrupt == "error":
        raise UserError(
            f"{len(bad)} image(s) could not be decoded: {'; '.join(bad[:5])}{' …' if len(bad) > 5 else ''}. "
            "Remove or replace them, or run with --on-corrupt skip to leave them out."
        )
    if bad:
        print(
            f"warning: skipped {len(bad)} corrupt image(s): {'; '.join(bad[:10])}{' …' if len(bad) > 10 else ''}",
            file=sys.stderr,
        )


def split_index(
    index: FileIndex, tag: str, test_fraction: float, seed: int = SPLIT_SEED
) -> tuple[FileImages, FileImages, dict[str, Any]]:
    """A deterministic stratified pool/test split of a dataset that has no test split; `info`
    records it (the test files by name when there are at most TEST_FILES_LISTED, and always
    their SHA-256), so that the results say exactly what was tested on."""
    pool_idx, test_idx = stratified_split(index.labels, test_fraction, seed)
    split_tag = f"{tag}:{index.fingerprint}/split{test_fraction}s{seed}"
    names = [str(index.files[int(i)]) for i in test_idx]
    info: dict[str, Any] = {
        "test_fraction": test_fraction,
        "seed": seed,
        "test_files_sha256": hashlib.sha256("\n".join(names).encode()).hexdigest(),
    }
    if len(names) <= TEST_FILES_LISTED:
        info["test_files"] = names
    return index.images(f"{split_tag}/pool", pool_idx), index.images(f"{split_tag}/test", test_idx), info


# -- prepare: download or copy, check, unpack, put in place -----------------------------------
@dataclass
class Prepared:
    name: str
    path: Path
    origin: str
    file: str | None = None
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None
    verified: str = ""
    linked: bool = False
    manifest: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _is_url(text: str) -> bool:
    return urllib.parse.urlparse(text).scheme in ("http", "https", "ftp", "file")


class _Hashes:
    def __init__(self) -> None:
        self.sha256 = hashlib.sha256()
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self.sha256.update(chunk)
        self.md5.update(chunk)
        self.size += len(chunk)


def _bytes_progress(console: Console) -> Any:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )


def _download(url: str, dest: Path, hashes: _Hashes, console: Console) -> None:
    from . import __version__

    request = urllib.request.Request(url, headers={"User-Agent": f"vecaf-bench/{__version__}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response, open(dest, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with _bytes_progress(console) as progress:
                task = progress.add_task(f"downloading {dest.name}", total=total)
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    hashes.update(chunk)
                    progress.advance(task, len(chunk))
    except urllib.error.URLError as e:
        reason = getattr(e, "reason", e)
        raise UserError(
            f"could not download '{url}' ({reason}). Check the address and the network, or download the file "
            "yourself and give its path with --from."
        ) from None
    except OSError as e:
        raise UserError(
            f"could not write the download to '{dest}' ({e.strerror or e}). Free some space there or choose "
            "another --data-root."
        ) from None


def _hash_file(path: Path, hashes: _Hashes, console: Console) -> None:
    size = path.stat().st_size
    with open(path, "rb") as f, _bytes_progress(console) as progress:
        task = progress.add_task(f"checking {path.name}", total=size)
        while chunk := f.read(4 << 20):
            hashes.update(chunk)
            progress.advance(task, len(chunk))


class _CountingReader:
    """Reports bytes read, so that unpacking a streamed archive can show progress."""

    def __init__(self, raw: BinaryIO, advance: Callable[[int], None]) -> None:
        self.raw, self.advance = raw, advance

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.advance(len(data))
        return data


def _unpack(archive: Path, dest: Path, console: Console) -> None:
    """tar (any compression) or zip into `dest`, refusing members that would land outside it."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if tarfile.is_tarfile(archive):
            with open(archive, "rb") as raw, _bytes_progress(console) as progress:
                task = progress.add_task(f"unpacking {archive.name}", total=archive.stat().st_size)
                reader = _CountingReader(raw, lambda n: progress.advance(task, n))
                with tarfile.open(fileobj=reader, mode="r|*") as tf:  # type: ignore[call-overload]
                    _extract_tar(tf, dest)
        elif zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf, _bytes_progress(console) as progress:
                members = zf.infolist()
                task = progress.add_task(f"unpacking {archive.name}", total=sum(m.compress_size for m in members))
                for m in members:
                    zf.extract(m, dest)  # zipfile drops '..' and absolute parts
                    progress.advance(task, m.compress_size)
        else:
            raise UserError(f"'{archive}' is neither a tar nor a zip archive. Give the dataset's archive or folder.")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error) as e:
        raise UserError(
            f"archive '{archive}' could not be unpacked ({type(e).__name__}: {e}): it is damaged or incomplete. "
            "Download it again."
        ) from None
    except OSError as e:
        raise UserError(
            f"unpacking '{archive}' into '{dest}' failed ({e.strerror or e}). Free some space there or choose "
            "another --data-root."
        ) from None


def _extract_tar(tf: tarfile.TarFile, dest: Path) -> None:
    if hasattr(tarfile, "data_filter"):
        tf.extractall(dest, filter="data")
        return
    root = dest.resolve()  # Pythons without extraction filters: the same refusals, by hand
    for m in tf:
        target = (dest / m.name).resolve()
        if not target.is_relative_to(root) or m.issym() or m.islnk() or m.isdev():
            raise tarfile.TarError(f"member '{m.name}' would be written outside the folder or is a link")
        tf.extract(m, dest)


def _find_dataset(top: Path, source: DataSource, depth: int = 3) -> Path | None:
    """The folder inside an unpacked archive (or copied folder) that holds the dataset."""
    level = [top]
    checked = 0
    for _ in range(depth + 1):
        nxt: list[Path] = []
        for d in level:
            if source.check(d) is None:
                return d
            checked += 1
            if checked > 64:
                return None
            nxt.extend(d / n for n in subfolders(d) if n != "__MACOSX")
        level = nxt
    return None


def _describe_top(top: Path) -> str:
    try:
        names = sorted(p.name for p in top.iterdir())
    except OSError:
        return "nothing"
    return ", ".join(names[:8]) + (" …" if len(names) > 8 else "") if names else "nothing"


def _check_sha256(value: str) -> str:
    v = value.strip().lower()
    if len(v) != 64 or any(c not in "0123456789abcdef" for c in v):
        raise UserError(f"--sha256 '{value}' is not a SHA-256 (64 hexadecimal digits).")
    return v


def prepare_dataset(
    source: DataSource,
    origin: str | None,
    data_root: str | Path | None = None,
    *,
    sha256: str | None = None,
    force: bool = False,
    link: bool = False,
    console: Console | None = None,
) -> Prepared:
    """Puts `source`'s dataset at its first candidate folder under the data root, from an archive
    (a path or a URL) or a folder, atomically: everything happens in a temporary folder inside
    the data root, and the dataset folder is renamed into place only once it checks out."""
    console = console or Console(stderr=True, emoji=False)
    root, _ = resolve_data_root(data_root)
    expected_sha = _check_sha256(sha256) if sha256 else None
    if origin is None:
        if not source.archives:
            raise UserError(
                f"dataset '{source.name}' has no public archive to download; give the archive or folder you "
                f"downloaded from {source.homepage} with --from PATH_OR_URL."
            )
        origin = source.archives[0]
        console.print(f"downloading the official archive {origin}", highlight=False)
    target = source.candidates(root)[0]
    if target.exists() or target.is_symlink():
        why = source.check(target)
        if not force:
            state = "is already there" if why is None else f"exists but does not hold it ({why})"
            raise UserError(
                f"dataset '{source.name}' {state}: {target}. Nothing was changed; add --force to replace it."
            )
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".prepare-{source.name}-"))
    except OSError as e:
        raise UserError(
            f"data root '{root}' is not writable ({e.strerror or e}). Choose another with --data-root."
        ) from None
    try:
        result = Prepared(name=source.name, path=target, origin=origin)
        hashes = _Hashes()
        local = None if _is_url(origin) else Path(origin).expanduser()
        if local is not None and not local.exists():
            raise UserError(f"--from '{origin}' does not exist. Give the path of the archive or folder, or a URL.")
        if local is not None and local.is_dir():
            if expected_sha:
                raise UserError(f"--sha256 checks an archive file, but --from '{origin}' is a folder.")
            found = _find_dataset(local, source)
            if found is None:
                raise UserError(
                    f"folder '{local}' does not hold dataset '{source.name}' ({source.check(local)}); it holds "
                    f"{_describe_top(local)}. It should be {source.layout}."
                )
            if target.exists() and (
                found.resolve().is_relative_to(target.resolve()) or target.resolve().is_relative_to(found.resolve())
            ):
                raise UserError(f"--from '{origin}' is where dataset '{source.name}' already is ({target}).")
            if link:
                placed = tmp / "link"
                placed.symlink_to(found.resolve(), target_is_directory=True)
                result.linked = True
            else:
                placed = tmp / "copy"
                console.print(f"copying {found} …", highlight=False)
                shutil.copytree(found, placed, symlinks=True)
            result.verified = "a folder: no checksum"
        else:
            if link:
                raise UserError("--link links a folder; --from is an archive, which is unpacked instead.")
            if local is None:
                name = Path(urllib.parse.urlparse(origin).path).name or f"{source.name}.download"
                archive = tmp / name
                _download(origin, archive, hashes, console)
            else:
                archive = local
                _hash_file(archive, hashes, console)
            result.file, result.size = archive.name, hashes.size
            result.sha256, result.md5 = hashes.sha256.hexdigest(), hashes.md5.hexdigest()
            result.verified = _verify(archive.name, result, expected_sha, root, source)
            _unpack(archive, tmp / "unpacked", console)
            if archive.parent == tmp:
                archive.unlink()  # the download is not kept: the manifest records its checksums
            found = _find_dataset(tmp / "unpacked", source)
            if found is None:
                raise UserError(
                    f"archive '{origin}' does not hold dataset '{source.name}': it unpacks to "
                    f"{_describe_top(tmp / 'unpacked')}, and no folder in it is {source.layout}. "
                    f"Check that it is the right archive ({source.homepage}).{' ' + source.note if source.note else ''}"
                )
            placed = found
        _put_in_place(placed, target, tmp)
        result.manifest = _record(root, result)
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _verify(filename: str, result: Prepared, expected_sha: str | None, root: Path, source: DataSource) -> str:
    if expected_sha is not None:
        if result.sha256 != expected_sha:
            raise UserError(
                f"'{filename}' has SHA-256 {result.sha256}, not the {expected_sha} given with --sha256: it is "
                f"damaged, incomplete or another release. Download it again (or check the value); nothing was "
                f"changed under {root}."
            )
        return "sha256 matches --sha256"
    try:
        md5 = dict(source.checksums()).get(filename) if source.checksums is not None else None
    except Exception:  # the package that records them is missing or changed: nothing to compare with
        md5 = None
    if md5 is not None:
        if result.md5 != md5:
            raise UserError(
                f"'{filename}' has MD5 {result.md5}, but the official {filename} has {md5} (as torchvision records "
                f"it): it is damaged or incomplete. Download it again; nothing was changed under {root}."
            )
        return "md5 matches the official archive's (as torchvision records it)"
    return "not verified (no known checksum): compare the SHA-256 above with the publisher's, or pass --sha256"


def _put_in_place(placed: Path, target: Path, tmp: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() or target.is_symlink():
        os.rename(target, tmp / "replaced")  # --force: the old copy goes when tmp is removed
    try:
        os.rename(placed, target)
    except OSError as e:
        raise UserError(f"could not move the dataset into '{target}' ({e.strerror or e}).") from None


def _record(root: Path, result: Prepared) -> Path:
    """Appends what was prepared (and its checksums) to the data root's manifest."""
    from .results import write_json_atomic

    path = root / MANIFEST
    try:
        entries = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        entries = {}
    entries[result.name] = {
        "folder": str(result.path),
        "from": result.origin,
        "file": result.file,
        "size": result.size,
        "sha256": result.sha256,
        "md5": result.md5,
        "verified": result.verified,
        "linked": result.linked,
        "prepared_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_json_atomic(path, entries)
    return path
