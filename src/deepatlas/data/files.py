"""Image files on disk: torchvision's ImageFolder layout and ImageNet's synset folders.

:class:`FileReader` decodes one file per image with Pillow, converts it to the model's
channels and resizes it (bilinear; Pillow's downscaling is antialiased), in the DataLoader's
worker processes. The file list is held compactly (one numpy byte-string array of paths
relative to the root, not a list of Path objects), so a million-file set costs tens of MB and
worker processes do not copy it page by page as reference counts change.

Listing reads directory entries only: no image is opened until it is read.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import IO

import numpy as np
import torch

from deepatlas.errors import DataError, UsageError

__all__ = ["IMAGE_SUFFIXES", "MAX_IMAGE_PIXELS", "DecodingReader", "FileReader", "check_root", "decode_image", "imagefolder_files",
           "read_synset_names"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".tif", ".tiff")

#: The largest image decoded (width x height): 16k x 16k. A larger file is refused by name
#: before it is decoded (Pillow's own bomb check warns at 89M pixels and raises at twice that).
MAX_IMAGE_PIXELS = 1 << 28


def imagefolder_files(root: Path, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(relative paths as bytes, labels) of every image under ``root/CLASS/``, in round-robin
    order over the classes (so a prefix keeps every class), each class's files sorted."""
    per_class: list[list[bytes]] = []
    for c in classes:
        found: list[bytes] = []
        for dirpath, dirnames, filenames in os.walk(root / c):
            dirnames.sort()
            rel = os.path.relpath(dirpath, root)
            found += [os.fsencode(os.path.join(rel, f)) for f in filenames if f.lower().endswith(IMAGE_SUFFIXES)]
        per_class.append(sorted(found))
    empty = [c for c, fs in zip(classes, per_class, strict=True) if not fs]
    if empty:
        raise DataError(f"class folder(s) without PNG/JPEG images in {root}: {', '.join(empty[:10])}"
                        + (f" and {len(empty) - 10} more" if len(empty) > 10 else ""))
    counts = np.array([len(fs) for fs in per_class])
    # round robin: image i of every class that has one, then image i + 1 ...
    rank = np.concatenate([np.arange(n) for n in counts])
    label = np.repeat(np.arange(len(classes)), counts)
    order = np.lexsort((label, rank))
    flat = np.array([f for fs in per_class for f in fs], dtype=np.bytes_)
    return flat[order], label[order].astype(np.int64)


def read_synset_names(root: Path, synsets: list[str]) -> list[str] | None:
    """Readable class names for ImageNet synset ids from ``LOC_synset_mapping.txt`` or
    ``synset_words.txt`` in ``root`` (``n01440764 tench, Tinca tinca`` -> ``tench``); a name
    that two synsets share gets its synset id appended. None when no mapping file exists."""
    for name in ("LOC_synset_mapping.txt", "synset_words.txt"):
        path = root / name
        if path.is_file():
            break
    else:
        return None
    mapping: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        wnid, _, words = line.strip().partition(" ")
        if wnid:
            mapping[wnid] = words.split(",")[0].strip() or wnid
    missing = [s for s in synsets if s not in mapping]
    if missing:
        raise DataError(f"{path} has no name for synset(s) {', '.join(missing[:5])}; it must list every class folder")
    names = [mapping[s] for s in synsets]
    dupes = {n for n in names if names.count(n) > 1}
    return [f"{n} ({s})" if n in dupes else n for n, s in zip(names, synsets, strict=True)]


class DecodingReader:
    """What the readers of encoded images share: the delivered shape, resolved once, and a
    ``read`` that decodes image by image into one uint8 batch. A subclass says how to decode
    image ``i`` (``_decode``) and how to name it in an error (``describe``).

    ``shape`` None takes the first image's size and channels and then refuses an image of
    another size or channel count (pass an input size to resize them all); a channel count of
    0 takes the first image's channels and converts the others to them.
    """

    decodes = True

    def _resolve(self, shape: tuple[int, int, int] | None) -> None:
        self.strict = shape is None  # no size given: every image must have the first one's
        if shape is None or shape[0] == 0:
            c0, h0, w0 = self._decode(0, None).shape
            shape = (c0, h0, w0) if shape is None else (c0, shape[1], shape[2])
        self.shape: tuple[int, int, int] = (int(shape[0]), int(shape[1]), int(shape[2]))

    def _decode(self, i: int, shape: tuple[int, int, int] | None) -> np.ndarray:
        raise NotImplementedError

    def describe(self, i: int) -> str:
        raise NotImplementedError

    def read(self, indices: np.ndarray) -> torch.Tensor:
        c, h, w = self.shape
        out = np.empty((len(indices), c, h, w), dtype=np.uint8)
        for k, i in enumerate(indices.tolist()):
            chw = self._decode(i, None if self.strict else self.shape)
            if chw.shape != out.shape[1:]:
                if chw.shape[0] != c:
                    raise DataError(f"{self.describe(i)} has {chw.shape[0]} channels, the first image {c}; "
                                    "pass --input-size CxHxW")
                raise DataError(f"{self.describe(i)} is {chw.shape[2]}x{chw.shape[1]}, the first image {w}x{h}; "
                                "pass --input-size HxW to resize them all")
            out[k] = chw
        return torch.from_numpy(out)


class FileReader(DecodingReader):
    """Images as files under ``root`` (paths relative to it, as bytes), decoded and fitted to
    ``shape`` (C, H, W) as read (see :class:`DecodingReader` for ``shape`` None)."""

    def __init__(self, root: Path, files: np.ndarray, shape: tuple[int, int, int] | None) -> None:
        self.root, self.files = root, files
        self._resolve(shape)

    def __len__(self) -> int:
        return len(self.files)

    def path(self, i: int) -> Path:
        return self.root / os.fsdecode(bytes(self.files[i]))

    def describe(self, i: int) -> str:
        return str(self.path(i))

    def _decode(self, i: int, shape: tuple[int, int, int] | None) -> np.ndarray:
        return decode_image(self.path(i), self.describe(i), shape)


def decode_image(source: Path | IO[bytes], what: str, shape: tuple[int, int, int] | None) -> np.ndarray:
    """One image file (a path or an open binary stream) -> (C, H, W) uint8.

    ``shape`` given: converted to its channels (1: grey "L", 3: "RGB") and resized to its
    (H, W), bilinear (antialiased when shrinking; a JPEG at least twice the size is first
    decoded at a reduced scale by its own DCT, which Pillow's ``draft`` offers). None: the
    file's own size, grey or RGB. ``what`` names the image in errors.

    Raises
    ------
    DataError
        Not an image, truncated, or larger than :data:`MAX_IMAGE_PIXELS` (refused from its
        header, before any pixel is decoded).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as im:
                if im.width * im.height > MAX_IMAGE_PIXELS:
                    raise DataError(f"{what} is {im.width}x{im.height} pixels, more than deepatlas decodes "
                                    f"({MAX_IMAGE_PIXELS:,}); shrink it or leave it out")
                want = None if shape is None else ("L" if shape[0] == 1 else "RGB")
                if shape is not None and im.format == "JPEG" and im.width >= 2 * shape[2] and im.height >= 2 * shape[1]:
                    im.draft(want, (shape[2], shape[1]))  # JPEG's own DCT scaling, never below the target size
                pic: Image.Image = im.convert(want or ("L" if im.mode in ("1", "L", "I;16", "I", "F") else "RGB"))
                if shape is not None and (pic.height, pic.width) != (shape[1], shape[2]):
                    pic = pic.resize((shape[2], shape[1]), Image.Resampling.BILINEAR)
                arr = np.asarray(pic)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"{what} is too large to decode safely ({exc})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{what} is not a readable image ({exc})") from None
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def check_root(root: Path, split: str, kind: str = "imagefolder") -> tuple[Path, str]:
    """The folder holding the class folders for ``split`` and the split's name."""
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist; it needs one sub-folder per class with PNG/JPEG files")
    subs = {s for s in ("train", "test", "val") if (root / s).is_dir()}
    if kind == "imagenet":
        if not subs:
            raise DataError(f"{root} has no train/ or val/ folder; ImageNet's layout is {root}/train/n01440764/*.JPEG "
                            f"and {root}/val/n01440764/*.JPEG")
        want = "val" if split == "test" else split
        if want == "all" or want not in subs:
            raise UsageError(f"{root} has {', '.join(sorted(subs))}; pick --split {' or '.join(sorted(subs))}")
        return root / want, want
    if subs >= {"train", "test"}:
        if split == "all":
            raise UsageError(f"{root} has train/ and test/; pick --split train or test")
        return root / split, split
    return root, "all"
