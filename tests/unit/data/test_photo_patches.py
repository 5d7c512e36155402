from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from deepatlas.data.photo_patches import PHOTOS, write_photo_patches


def test_patches_are_real_colour_and_test_rows_are_unseen(tmp_path: Path) -> None:
    root = write_photo_patches(tmp_path, per_class=4, test_per_class=2, size=32, seed=1)
    for split, n in (("train", 4), ("test", 2)):
        assert sorted(p.name for p in (root / split).iterdir()) == sorted(PHOTOS)
        for cls in PHOTOS:
            files = sorted((root / split / cls).glob("*.png"))
            assert len(files) == n
            arr = np.asarray(Image.open(files[0]))
            assert arr.shape == (32, 32, 3) and arr.dtype == np.uint8
    # colour: the channels differ (a grey image would have r == g == b everywhere)
    cat = np.asarray(Image.open(root / "train" / "cat" / "0000.png")).astype(int)
    assert np.abs(cat[..., 0] - cat[..., 2]).mean() > 2
    # where each patch was cut: test patches only from the photograph's lower quarter
    from deepatlas.data.photo_patches import _photo

    photo = _photo(PHOTOS["cat"]).astype(int)
    for split in ("train", "test"):
        for f in (root / split / "cat").glob("*.png"):
            patch = np.asarray(Image.open(f)).astype(int)
            ys, xs = np.nonzero((photo[:-31, :-31] == patch[0, 0]).all(-1))
            where = [(y, x) for y, x in zip(ys, xs, strict=True) if (photo[y : y + 32, x : x + 32] == patch).all()]
            assert where, f.name
            assert all((y >= 225) == (split == "test") for y, _ in where)
    # writing again with the same seed gives the same files; another seed other patches
    again = write_photo_patches(tmp_path / "b", per_class=4, test_per_class=2, size=32, seed=1)
    other = write_photo_patches(tmp_path / "c", per_class=4, test_per_class=2, size=32, seed=2)
    same = (again / "train" / "cat" / "0000.png").read_bytes() == (root / "train" / "cat" / "0000.png").read_bytes()
    differ = (other / "train" / "cat" / "0000.png").read_bytes() != (root / "train" / "cat" / "0000.png").read_bytes()
    assert same and differ
