"""The streaming data layer: ImageSets read on demand through DataLoader workers, WebDataset
shards, ImageNet's layout, sharding across processes, and memory that does not grow with the
number of images."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deepatlas.data import load_data
from deepatlas.data.base import ArrayReader, ImageSet, Stream
from deepatlas.errors import DataError, UsageError
from tests.helpers import pixels


def _jpeg_folder(root: Path, classes: int, per_class: int, size: int = 24, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for c in range(classes):
        d = root / f"class{c:02d}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            base = rng.integers(0, 256, (size // 4, size // 4, 3), dtype=np.uint8)
            img = Image.fromarray(base).resize((size, size), Image.Resampling.BILINEAR)  # smooth, JPEG-friendly
            img.save(d / f"{i:04d}.jpg", quality=90)
    return root


def test_batches_keep_the_data_order_whatever_the_workers(tmp_path: Path) -> None:
    data = load_data(f"imagefolder:{_jpeg_folder(tmp_path / 'f', 3, 7)}", "all", input_shape=(3, 16, 16))
    single = list(data.batches(4, workers=0))
    multi = list(data.batches(4, workers=2))
    assert [len(b.images) for b in single] == [4, 4, 4, 4, 4, 1]
    assert torch.equal(torch.cat([b.images for b in single]), torch.cat([b.images for b in multi]))
    assert torch.cat([b.labels for b in multi]).tolist() == data.labels.tolist()
    assert torch.cat([b.positions for b in multi]).tolist() == list(range(21))
    assert single[0].images.dtype == torch.float32 and float(single[0].images.max()) <= 1.0


def test_a_reader_hands_out_uint8_until_the_device() -> None:
    reader = ArrayReader(np.full((5, 1, 4, 4), 255, dtype=np.uint8), shape=(3, 8, 8))
    raw = reader.read(np.arange(5))
    assert raw.dtype == torch.uint8 and tuple(raw.shape) == (5, 3, 8, 8)  # resized, still bytes
    data = ImageSet(reader, np.zeros(5, dtype=np.int64), ("a",), "x", "all")
    assert float(next(iter(data.batches(5))).images.min()) == 1.0  # 255 -> 1.0 after the loader


def test_shards_of_a_torchrun_job_read_every_image_exactly_once() -> None:
    data = ImageSet.from_tensors(torch.rand(23, 1, 4, 4), torch.arange(23) % 3, ("a", "b", "c"))
    seen = [p for rank in range(3) for b in data.batches(4, shard=(rank, 3)) for p in b.positions.tolist()]
    assert sorted(seen) == list(range(23)) and len(seen) == 23
    resumed = [p for b in data.batches(4, shard=(1, 3), start=2) for p in b.positions.tolist()]
    assert resumed == list(range(1, 23, 3))[2:]  # a resumed pass skips what its share had done


def test_limit_and_per_class_selection_read_nothing_else(tmp_path: Path) -> None:
    root = _jpeg_folder(tmp_path / "f", 2, 5)
    (root / "class01" / "0004.jpg").write_bytes(b"broken")  # the last image of the round-robin order
    data = load_data(f"imagefolder:{root}", "all", input_shape=(3, 8, 8), limit=8)
    assert len(pixels(data)) == 8  # the broken file is beyond the limit: never opened
    few = load_data(f"imagefolder:{root}", "all", input_shape=(3, 8, 8)).subset(per_class=2)
    assert few.labels.tolist() == [0, 1, 0, 1] and len(pixels(few)) == 4
    with pytest.raises(DataError, match=r"0004\.jpg is not a readable image"):
        pixels(load_data(f"imagefolder:{root}", "all", input_shape=(3, 8, 8)))


def test_a_stream_prepares_batches_and_reads_again_per_pass() -> None:
    data = ImageSet.from_tensors(torch.rand(10, 1, 4, 4), torch.arange(10) % 2, ("a", "b"))
    stream = Stream(data, lambda x: x * 2, batch_size=3)
    first = torch.cat([x for x, _ in stream])
    assert torch.allclose(first, pixels(data) * 2) and torch.allclose(torch.cat([x for x, _ in stream]), first)
    assert torch.allclose(stream.take([4, 1]), pixels(data)[[4, 1]] * 2)


def test_webdataset_shards_read_as_the_webdataset_package_reads_them(tmp_path: Path) -> None:
    wds = pytest.importorskip("webdataset")
    rng = np.random.default_rng(0)
    pattern = str(tmp_path / "shards-%06d.tar")
    with wds.ShardWriter(pattern, maxcount=5, verbose=0) as sink:  # 12 samples -> 3 shards
        for i in range(12):
            arr = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, format="PNG")  # lossless: pixels can be compared exactly
            sink.write({"__key__": f"sample{i:04d}", "png": buf.getvalue(), "cls": str(i % 4)})
    (tmp_path / "classes.txt").write_text("ant\nbee\ncat\ndog\n")
    shards = sorted(tmp_path.glob("shards-*.tar"))
    assert len(shards) == 3
    ours = load_data(f"webdataset:{tmp_path}", "all")
    assert len(ours) == 12 and ours.class_names == ("ant", "bee", "cat", "dog") and ours.input_shape == (3, 10, 12)
    # the oracle: the webdataset package's own pipeline over the same shards
    theirs = wds.WebDataset([str(s) for s in shards], shardshuffle=False).decode("rgb8").to_tuple("png", "cls")
    want = [(torch.from_numpy(np.array(img)).permute(2, 0, 1), int(label)) for img, label in theirs]
    got = pixels(ours)
    assert ours.labels.tolist() == [label for _, label in want]
    assert all(torch.equal((got[k] * 255).round().to(torch.uint8), img) for k, (img, _) in enumerate(want))
    # a brace range names the same shards; random access reads one sample
    ranged = load_data(f"webdataset:{tmp_path}/shards-{{000000..000002}}.tar", "all", input_shape=(1, 5, 6))
    assert len(ranged) == 12 and tuple(ranged.take([7]).shape) == (1, 1, 5, 6)
    assert ranged.source.startswith("webdataset:") and "{000000..000002}" in ranged.source


def test_bad_shards_are_refused_in_one_line(tmp_path: Path) -> None:
    with tarfile.open(tmp_path / "nolabel.tar", "w") as tar:
        data = io.BytesIO()
        Image.new("RGB", (4, 4)).save(data, format="PNG")
        info = tarfile.TarInfo("a.png")
        info.size = len(data.getvalue())
        tar.addfile(info, io.BytesIO(data.getvalue()))
    with pytest.raises(DataError, match="sample a has no label member"):
        load_data(f"webdataset:{tmp_path / 'nolabel.tar'}", "all")
    (tmp_path / "z.tar").write_bytes(b"\x1f\x8b" + b"\x00" * 100)
    with pytest.raises(DataError, match="gzip"):
        load_data(f"webdataset:{tmp_path / 'z.tar'}", "all")
    with pytest.raises(DataError, match="do not exist"):
        load_data(f"webdataset:{tmp_path}/x-{{0..3}}.tar", "all")


def test_imagenet_layout_with_its_synset_names(tmp_path: Path) -> None:
    root = tmp_path / "imagenet"
    for split in ("train", "val"):
        _jpeg_folder(root / split, 0, 0)
        for wnid, n in (("n01440764", 3), ("n01443537", 2), ("n02012849", 2)):
            d = root / split / wnid
            d.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (40, 30), (i * 40, 10, 200)).save(d / f"{wnid}_{i}.JPEG")
    (root / "LOC_synset_mapping.txt").write_text(
        "n01440764 tench, Tinca tinca\nn01443537 goldfish, Carassius auratus\nn02012849 crane\nn03126707 crane\n")
    val = load_data(f"imagenet:{root}", "val", input_shape=(3, 16, 16))
    assert val.class_names == ("tench", "goldfish", "crane") and val.split == "val" and len(val) == 7
    assert load_data(f"imagenet:{root}", "test", input_shape=(3, 16, 16)).split == "val"  # test means the validation set
    assert tuple(pixels(val).shape) == (7, 3, 16, 16)
    with pytest.raises(UsageError, match="pick --split"):
        load_data(f"imagenet:{root}", "all")
    (root / "LOC_synset_mapping.txt").write_text("n01440764 tench\n")
    with pytest.raises(DataError, match="no name for synset"):
        load_data(f"imagenet:{root}", "val")


_PEAK = """
import json, sys
import numpy as np, torch
from deepatlas.data import load_data
from deepatlas.memory import StageMeter
from torch import nn
data = load_data("imagefolder:" + sys.argv[1], "all", input_shape=(3, 64, 64), limit=int(sys.argv[2]))
model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
from deepatlas.ingest.coactivation import compute_coactivation
meter = StageMeter()
compute_coactivation(model, data, batch_size=64, workers=1, meter=meter)
print(json.dumps({"peak": meter.peaks["forward+stats"], "baseline": meter.peaks["setup"]}))
"""


def test_memory_does_not_grow_with_the_number_of_images(tmp_path: Path) -> None:
    root = _jpeg_folder(tmp_path / "f", 4, 800, size=48)  # 3,200 JPEGs

    def peak(n: int) -> float:
        out = subprocess.run([sys.executable, "-c", _PEAK, str(root), str(n)], capture_output=True, text=True, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        return float(row["peak"] - row["baseline"])

    small, large = peak(400), peak(3200)
    # 8x the images: the peak moves by the allocator's steps (measured: +0 to +40 MB from 400 to
    # 6,400 images), where a float32 copy of the images would add 157 MB
    assert large - small < 60.0, (small, large)


def test_fitting_stored_images_to_another_channel_count_or_aspect_is_said() -> None:
    grey = ImageSet(ArrayReader(np.zeros((4, 1, 28, 28), np.uint8)), [0, 1, 0, 1], ["a", "b"], "fashion-mnist", "test")
    assert grey.fit_note() is None  # as stored
    assert ImageSet(ArrayReader(grey.reader.array, (1, 32, 32)), [0, 1, 0, 1], ["a", "b"], "fm", "test").fit_note() is None  # rescale only
    note = ImageSet(ArrayReader(grey.reader.array, (3, 32, 32)), [0, 1, 0, 1], ["a", "b"], "fm", "test").fit_note()
    assert note is not None and "1x28x28" in note and "3x32x32" in note and "grey repeated" in note
    note = ImageSet(ArrayReader(grey.reader.array, (1, 28, 56)), [0, 1, 0, 1], ["a", "b"], "fm", "test").fit_note()
    assert note is not None and "aspect changed (28x28 -> 56x28)" in note
    colour = load_data("fashion-mnist", "test", input_shape=(3, 28, 28), limit=4)
    assert colour.fit_note() is not None and "fashion-mnist" in colour.fit_note()
