"""WebDataset tar shards, read by index.

A WebDataset shard is a plain POSIX tar whose consecutive members with the same *key* form
one sample: ``000017.jpg`` and ``000017.cls`` are the image and the label of sample
``000017`` (the key is the member's path up to the first dot of its file name; what follows
is the extension, lower-cased), as the ``webdataset`` package writes them (``ShardWriter``)
and reads them. deepatlas scans each shard's tar headers once (the data of image members is
skipped with a seek; only the small label members are read) and keeps, per sample, the
shard, the byte offset and size of its image and its label: 28 bytes a sample. A sample is
then read with one ``pread`` of its bytes, in any order, from any process.

Why an index instead of the package's streaming pipeline: random access makes every image of
a set reachable by its position (``explain --image N``), lets ``--limit`` and per-class
selection read nothing else, gives each torch.distributed rank exactly every world-th sample
(shard-level splitting gives ranks unequal shares, or none when there are fewer shards than
ranks), and lets a resumed ingest skip what it has done without reading it. Shards must be
local, uncompressed ``.tar`` files (gzip cannot be read at an offset).

Spec (``--data webdataset:...``): a folder (every ``*.tar`` in it, sorted), one ``.tar``, or
a brace range ``/data/shards-{000000..000099}.tar``. Labels come from a ``cls`` member (an
integer as text; also ``cls.txt``, ``label``, ``label.txt``); class names from
``classes.txt`` (one per line) in the shards' folder, else the label numbers.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
from pathlib import Path

import numpy as np

from deepatlas.data.files import IMAGE_SUFFIXES, DecodingReader, decode_image
from deepatlas.errors import DataError, UsageError

__all__ = ["LABEL_EXTENSIONS", "ShardReader", "expand_shards", "index_shards"]

#: Member extensions that hold a sample's label (an integer as text).
LABEL_EXTENSIONS = ("cls", "cls.txt", "label", "label.txt")
_IMAGE_EXTENSIONS = tuple(s.lstrip(".") for s in IMAGE_SUFFIXES)
_KEY = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")  # webdataset's base_plus_ext: key = up to the first dot of the file name


def expand_shards(spec: str) -> list[Path]:
    """The shard files a spec names: a folder's ``*.tar`` (sorted), one file, or a brace range."""
    m = re.search(r"\{(\d+)\.\.(\d+)\}", spec)
    if m:
        lo, hi = m.group(1), m.group(2)
        if int(hi) < int(lo):
            raise UsageError(f"shard range {{{lo}..{hi}}} is empty")
        if int(hi) - int(lo) > 10_000_000:
            raise UsageError(f"shard range {{{lo}..{hi}}} is too long")
        width = len(lo)
        paths = [Path(spec[: m.start()] + str(i).zfill(width) + spec[m.end() :]).expanduser().resolve()
                 for i in range(int(lo), int(hi) + 1)]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise DataError(f"{len(missing)} of the {len(paths)} shards named by {spec} do not exist, e.g. {missing[0]}")
        return paths
    path = Path(spec).expanduser().resolve()
    if path.is_dir():
        paths = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(".tar"))
        if not paths:
            raise DataError(f"{path} holds no .tar shards")
        return paths
    if path.is_file():
        return [path]
    raise DataError(f"no shards at {path}: give a folder of .tar files, one .tar, or a range like shards-{{000000..000009}}.tar")


def index_shards(paths: list[Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Scan tar headers: per sample (shard index, image offset, image size, label) and its key.

    Raises
    ------
    DataError
        A compressed or unreadable shard, a sample without an image or a label, a label that is
        not an integer.
    """
    shard_ids: list[int] = []
    offsets: list[int] = []
    sizes: list[int] = []
    labels: list[int] = []
    keys: list[str] = []
    for s, path in enumerate(paths):
        with open(path, "rb") as raw:
            if raw.read(2) == b"\x1f\x8b":
                raise DataError(f"{path} is gzip-compressed; deepatlas reads uncompressed .tar shards (gunzip it)")
            raw.seek(0)
            try:
                tar = tarfile.open(fileobj=raw, mode="r:")
            except tarfile.TarError as exc:
                raise DataError(f"{path} is not a tar file ({exc})") from None
            current: str | None = None
            image: tuple[int, int] | None = None
            label: int | None = None
            samples: list[tuple[str | None, tuple[int, int] | None, int | None]] = []
            try:
                for member in tar:
                    if not member.isfile():
                        continue
                    m = _KEY.match(member.name)
                    if m is None or os.path.basename(member.name).startswith("__"):
                        continue
                    key, ext = m.group(1), m.group(2).lower()
                    if key != current:
                        samples.append((current, image, label))
                        current, image, label = key, None, None
                    if ext in _IMAGE_EXTENSIONS and image is None:
                        image = (member.offset_data, member.size)
                    elif ext in LABEL_EXTENSIONS:
                        f = tar.extractfile(member)
                        text = f.read(64).decode("ascii", "replace").strip() if f is not None else ""
                        if not text.lstrip("-").isdigit():
                            raise DataError(f"{path}: {member.name} holds {text[:20]!r}, not an integer label")
                        label = int(text)
                samples.append((current, image, label))
            except tarfile.TarError as exc:
                raise DataError(f"{path} is truncated or not a tar file ({exc})") from None
            for sample_key, sample_image, sample_label in samples:
                if sample_key is None:
                    continue
                if sample_image is None:
                    raise DataError(f"{path}: sample {sample_key} has no image member ({', '.join(_IMAGE_EXTENSIONS[:4])}, ...)")
                if sample_label is None:
                    raise DataError(f"{path}: sample {sample_key} has no label member ({', '.join(LABEL_EXTENSIONS)})")
                shard_ids.append(s)
                offsets.append(sample_image[0])
                sizes.append(sample_image[1])
                labels.append(sample_label)
                keys.append(sample_key)
    if not labels:
        raise DataError(f"the shards {paths[0]}{' ...' if len(paths) > 1 else ''} hold no samples")
    return (np.asarray(shard_ids, dtype=np.int32), np.asarray(offsets, dtype=np.int64), np.asarray(sizes, dtype=np.int64),
            np.asarray(labels, dtype=np.int64), keys)


class ShardReader(DecodingReader):
    """Samples of WebDataset shards by position, decoded and fitted to ``shape`` as read (see
    :class:`deepatlas.data.files.DecodingReader` for ``shape`` None)."""

    def __init__(self, paths: list[Path], shard_ids: np.ndarray, offsets: np.ndarray, sizes: np.ndarray,
                 keys: list[str], shape: tuple[int, int, int] | None) -> None:
        self.paths = [str(p) for p in paths]
        self.shard_ids, self.offsets, self.sizes = shard_ids, offsets, sizes
        self.keys = np.asarray(keys, dtype=np.bytes_)
        self._fds: dict[int, int] = {}
        self._pid = os.getpid()
        self._resolve(shape)

    def __len__(self) -> int:
        return len(self.offsets)

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state["_fds"] = {}  # descriptors are per process
        return state

    def _bytes(self, i: int) -> bytes:
        if os.getpid() != self._pid:  # a forked worker: its own descriptors
            self._fds, self._pid = {}, os.getpid()
        s = int(self.shard_ids[i])
        fd = self._fds.get(s)
        if fd is None:
            try:
                fd = self._fds[s] = os.open(self.paths[s], os.O_RDONLY)
            except OSError as exc:
                raise DataError(f"cannot open shard {self.paths[s]}: {exc.strerror}") from None
        data = os.pread(fd, int(self.sizes[i]), int(self.offsets[i]))
        if len(data) != int(self.sizes[i]):
            raise DataError(f"shard {self.paths[s]} is shorter than its index says (changed since it was opened?)")
        return data

    def describe(self, i: int) -> str:
        return f"{self.paths[int(self.shard_ids[i])]}:{bytes(self.keys[i]).decode(errors='replace')}"

    def _decode(self, i: int, shape: tuple[int, int, int] | None) -> np.ndarray:
        return decode_image(io.BytesIO(self._bytes(i)), self.describe(i), shape)

    def __del__(self) -> None:
        if getattr(self, "_pid", None) == os.getpid():
            for fd in getattr(self, "_fds", {}).values():
                try:
                    os.close(fd)
                except OSError:
                    pass
