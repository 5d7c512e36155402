"""A small real colour data set: patches of the photographs scikit-image ships, as an image folder.

Eight classes, one per photograph (astronaut, cat, coffee, galaxies, tissue stain, motorcycle,
retina, rocket). Each image is a square patch cut from that photograph at a seeded random
place; training patches come from the upper three quarters of the photograph and test
patches from the lower quarter, so no test pixel was seen in training. The question a model
answers is "which photograph is this patch from": real colour statistics (skin, fur, foam,
stars, stain, metal), no download (the photographs are inside the ``scikit-image`` wheel).

The folder is torchvision's ImageFolder layout, ``DIR/{train,test}/{class}/{n}.png``, so it
tests every loader and model path a user's own photos take.

Examples
--------
>>> from pathlib import Path
>>> import tempfile
>>> root = write_photo_patches(Path(tempfile.mkdtemp()), per_class=3, size=16)
>>> sorted(p.name for p in (root / "train").iterdir())[:3]
['astronaut', 'cat', 'coffee']
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from deepatlas.errors import DataError, UsageError

__all__ = ["PHOTOS", "write_imagenet_shaped", "write_photo_patches"]

#: class name -> scikit-image loader name
PHOTOS: dict[str, str] = {
    "astronaut": "astronaut", "cat": "chelsea", "coffee": "coffee", "galaxies": "hubble_deep_field",
    "stain": "immunohistochemistry", "motorcycle": "stereo_motorcycle", "retina": "retina", "rocket": "rocket",
}


def _photo(loader: str) -> np.ndarray:
    try:
        import skimage.data
    except ImportError:
        raise DataError("the photo patches need scikit-image (pip install scikit-image); its wheel holds the "
                        "photographs") from None
    fn: Callable[[], object] = getattr(skimage.data, loader)
    img = fn()
    if isinstance(img, tuple):  # stereo_motorcycle: (left, right, disparity)
        img = img[0]
    arr = np.asarray(img)
    if arr.ndim != 3 or arr.shape[2] < 3:
        raise DataError(f"scikit-image's {loader} is not a colour photograph")
    return arr[..., :3].astype(np.uint8)


def write_photo_patches(root: str | Path, *, per_class: int = 100, test_per_class: int | None = None,
                        size: int = 64, seed: int = 0) -> Path:
    """Write the patch data set under ``root`` and return ``root``.

    Parameters
    ----------
    root : path
        Created if missing; ``root/train`` and ``root/test`` are (re)written.
    per_class : int, default 100
        Training patches per class.
    test_per_class : int, optional
        Test patches per class; default ``per_class // 4`` (at least 1).
    size : int, default 64
        Patch side in pixels.
    seed : int, default 0

    Returns
    -------
    Path
    """
    from PIL import Image

    if per_class < 1 or size < 4:
        raise UsageError("per_class must be >= 1 and size >= 4")
    n_test = test_per_class if test_per_class is not None else max(1, per_class // 4)
    root = Path(root)
    rng = np.random.default_rng(seed)
    for cls, loader in PHOTOS.items():
        photo = _photo(loader)
        h, w = photo.shape[:2]
        cut = int(h * 0.75)
        if cut < size or h - cut < size or w < size:
            raise DataError(f"{loader} ({h}x{w}) is too small for {size}-pixel patches")
        for split, n, (top, bottom) in (("train", per_class, (0, cut)), ("test", n_test, (cut, h))):
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for old in folder.glob("*.png"):
                old.unlink()
            for i in range(n):
                y = int(rng.integers(top, bottom - size + 1))
                x = int(rng.integers(0, w - size + 1))
                Image.fromarray(photo[y : y + size, x : x + size]).save(folder / f"{i:04d}.png")
    return root


def write_imagenet_shaped(root: str | Path, *, classes: int = 100, per_class: int = 160, size: int = 224,
                          seed: int = 0) -> Path:
    """An ImageNet-shaped folder of JPEGs cut from the same photographs, for scale benchmarks.

    ``root/train/n00000000/n00000000_0.JPEG`` ...: ``classes`` synset-style folders (class k is
    one region of one photograph: photograph ``k % 8``, region ``k // 8`` of a grid over it),
    each holding ``per_class`` random crops of its region (side 40-100% of the region, so
    images of a class differ) resized to ``size`` x ``size`` and saved as JPEG (quality 90),
    and ``root/LOC_synset_mapping.txt`` naming each class (``astronaut-r3``), the layout and
    mapping file ImageNet ships. Read back with ``--data imagenet:ROOT --split train``.
    """
    from PIL import Image

    if classes < 1 or per_class < 1 or size < 8:
        raise UsageError("classes and per_class must be >= 1 and size >= 8")
    root = Path(root)
    rng = np.random.default_rng(seed)
    photos = [(name, _photo(loader)) for name, loader in PHOTOS.items()]
    regions = -(-classes // len(photos))
    side = int(np.ceil(np.sqrt(regions)))
    names = []
    for k in range(classes):
        name, photo = photos[k % len(photos)]
        r = k // len(photos)
        h, w = photo.shape[:2]
        rh, rw = h // side, w // side
        top, left = (r // side) * rh, (r % side) * rw
        wnid = f"n{k:08d}"
        names.append(f"{wnid} {name}-r{r}")
        folder = root / "train" / wnid
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            crop = int(rng.integers(max(8, int(0.4 * min(rh, rw))), min(rh, rw) + 1))
            y = top + int(rng.integers(0, rh - crop + 1))
            x = left + int(rng.integers(0, rw - crop + 1))
            patch = Image.fromarray(photo[y : y + crop, x : x + crop]).resize((size, size), Image.Resampling.BILINEAR)
            patch.save(folder / f"{wnid}_{i}.JPEG", quality=90)
    (root / "LOC_synset_mapping.txt").write_text("\n".join(names) + "\n")
    return root
