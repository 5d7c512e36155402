"""Loading the models people have: torchvision builders, factories, safetensors, refused pickles,
crafted checkpoint metadata, and reloading a run's model from its stored source."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

from deepatlas.errors import CheckpointError, UsageError
from deepatlas.models import FashionCNN, load_checkpoint, save_checkpoint
from deepatlas.models.checkpoint import PICKLE_REFUSED
from deepatlas.models.loading import (
    complete_metadata,
    find_by_hash,
    load_model,
    model_props,
    reload_model,
)

torch.set_num_threads(1)

FACTORY = """
import torch.nn as nn

def tiny(num_classes=4):
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))

def not_a_model():
    return 42
"""


def _resnet(n: int = 3) -> nn.Module:
    torch.manual_seed(7)
    return torchvision.models.resnet18(weights=None, num_classes=n).eval()


def test_torchvision_with_safetensors_weights(tmp_path: Path) -> None:
    ref = _resnet()
    save_file(ref.state_dict(), str(tmp_path / "w.safetensors"))
    ckpt = load_model("torchvision:resnet18", num_classes=3, weights=tmp_path / "w.safetensors")
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(ckpt.model(x), ref(x))
    assert ckpt.meta["input_shape"] == [3, 224, 224] and ckpt.meta["mean"] == [0.485, 0.456, 0.406]
    assert ckpt.source["weights"] == str((tmp_path / "w.safetensors").resolve())
    # channel-wise normalisation: channel 0 of a 0.485 image becomes 0, channel 1 does not
    z = ckpt.normalize(torch.full((1, 3, 2, 2), 0.485))
    assert z[0, 0].abs().max() < 1e-6 and z[0, 1].abs().min() > 0.1
    props = model_props(ckpt)
    assert props["key"] == ckpt.sha256 and json.loads(props["source"])["spec"] == "torchvision:resnet18"
    assert len(props["file_sha256"]) == 64 and Path(props["path"]).is_absolute()


def test_state_dict_wrappers_and_dataparallel_prefix(tmp_path: Path) -> None:
    ref = _resnet()
    torch.save({"state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}, "epoch": 3}, tmp_path / "w.pt")
    ckpt = load_model("torchvision:resnet18", num_classes=3, weights=tmp_path / "w.pt")
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(ckpt.model(x), ref(x))


def test_same_weights_same_key_whatever_the_format(tmp_path: Path) -> None:
    ref = _resnet()
    save_file(ref.state_dict(), str(tmp_path / "w.safetensors"))
    torch.save(ref.state_dict(), tmp_path / "w.pt")
    a = load_model("torchvision:resnet18", num_classes=3, weights=tmp_path / "w.safetensors")
    b = load_model("torchvision:resnet18", num_classes=3, weights=tmp_path / "w.pt")
    c = load_model("torchvision:resnet18", num_classes=3)  # seeded initialisation, other weights
    assert a.sha256 == b.sha256 != c.sha256 and a.file_sha256 != b.file_sha256


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("kind", ["whole-model", "payload"])
def test_pickles_are_refused_and_run_nothing(tmp_path: Path, kind: str) -> None:
    marker = tmp_path / "PWNED"
    path = tmp_path / "w.pt"
    torch.save(_resnet() if kind == "whole-model" else {"x": _Payload(str(marker))}, path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(CheckpointError) as info:
            load_model("torchvision:resnet18", num_classes=3, weights=path)
        with pytest.raises(CheckpointError, match="pickled object"):
            load_checkpoint(path)  # the same words when given as a deepatlas checkpoint
    assert PICKLE_REFUSED in str(info.value) and "--trust-pickle" in str(info.value)
    assert not marker.exists()
    assert not [w for w in caught if "weights_only" in str(w.message)]


def test_trust_pickle_loads_a_whole_model(tmp_path: Path) -> None:
    ref = _resnet()
    torch.save(ref, tmp_path / "full.pt")
    ckpt = load_model("torchvision:resnet18", num_classes=3, weights=tmp_path / "full.pt", trust_pickle=True)
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(ckpt.model(x), ref(x)) and ckpt.source["trust_pickle"] is True


def test_factory_file_with_json_and_toml_sidecars(tmp_path: Path) -> None:
    (tmp_path / "net.py").write_text(FACTORY)
    torch.manual_seed(3)
    ref = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    save_file(ref.state_dict(), str(tmp_path / "w.safetensors"))
    (tmp_path / "w.json").write_text(json.dumps({"class_names": ["cat", "dog"], "num_classes": 2, "input_shape": [3, 20, 20],
                                                 "mean": [0.5, 0.5, 0.5], "std": 0.25}))
    ckpt = load_model(f"{tmp_path}/net.py:tiny", weights=tmp_path / "w.safetensors")
    assert ckpt.class_names == ("cat", "dog") and ckpt.meta["input_shape"] == [3, 20, 20]
    x = torch.rand(1, 3, 20, 20)
    assert torch.equal(ckpt.model(x), ref(x))
    # flags win over the sidecar
    ckpt = load_model(f"{tmp_path}/net.py:tiny", weights=tmp_path / "w.safetensors", class_names=["a", "b"])
    assert ckpt.class_names == ("a", "b")
    (tmp_path / "w.json").unlink()
    (tmp_path / "w.toml").write_text('class_names = ["x", "y"]\nnum_classes = 2\n')
    assert load_model(f"{tmp_path}/net.py:tiny", weights=tmp_path / "w.safetensors").class_names == ("x", "y")
    (tmp_path / "w.toml").write_text('class_names = ["x", "y"]\n')  # no num_classes: tiny() builds its default 4
    with pytest.raises(CheckpointError, match="does not fit"):
        load_model(f"{tmp_path}/net.py:tiny", weights=tmp_path / "w.safetensors")
    (tmp_path / "w.toml").write_text('colour = "red"\n')
    with pytest.raises(CheckpointError, match="unknown key"):
        load_model(f"{tmp_path}/net.py:tiny", weights=tmp_path / "w.safetensors")


def test_bad_specs_and_weights(tmp_path: Path) -> None:
    (tmp_path / "net.py").write_text(FACTORY)
    with pytest.raises(UsageError, match=r"not a torch\.nn\.Module"):
        load_model(f"{tmp_path}/net.py:not_a_model")
    with pytest.raises(UsageError, match="has no function"):
        load_model(f"{tmp_path}/net.py:missing")
    with pytest.raises(UsageError, match="no classification model"):
        load_model("torchvision:resnet999")
    save_file(_resnet(5).state_dict(), str(tmp_path / "w5.safetensors"))
    with pytest.raises(CheckpointError, match="does not fit torchvision:resnet18"):
        load_model("torchvision:resnet18", num_classes=3, weights=tmp_path / "w5.safetensors")
    with pytest.raises(CheckpointError, match="bare weights"):
        load_model(tmp_path / "w5.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match=r"not a readable \.safetensors"):
        load_model("torchvision:resnet18", num_classes=3, weights=tmp_path / "junk.safetensors")


def _checkpoint(tmp_path: Path) -> Path:
    model = FashionCNN(1, 10, (2, 3, 4), 5, 28)
    return save_checkpoint(tmp_path / "m.pt", model, "fashion_cnn",
                           {"in_channels": 1, "n_classes": 10, "widths": [2, 3, 4], "hidden": 5, "input_size": 28},
                           {"class_names": [str(i) for i in range(10)], "input_shape": [1, 28, 28]})


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("arch_config.hidden", 10**12, "outside 0.."),  # would allocate terabytes
        ("arch_config.hidden", 10**5, "asks for"),  # within range, but not the stored weights' size
        ("arch_config.widths", [2, -3, 4], "outside 0.."),
        ("meta.class_names", None, "no class names"),
        ("meta", ["not", "a", "dict"], "meta is a list"),
        ("arch_config", "fashion", "arch_config is a str"),
        ("meta.input_shape", [1, -28, 28], "input_shape"),
    ],
)
def test_crafted_checkpoint_metadata(tmp_path: Path, field: str, value: object, message: str) -> None:
    path = _checkpoint(tmp_path)
    payload = torch.load(path, weights_only=True)
    parts = field.split(".")
    if len(parts) == 1:
        payload[parts[0]] = value
    elif value is None:
        del payload[parts[0]][parts[1]]
    else:
        payload[parts[0]][parts[1]] = value
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_reload_finds_a_moved_file_by_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPATLAS_HOME", str(tmp_path / "home"))
    ref = _resnet()
    save_file(ref.state_dict(), str(tmp_path / "w.safetensors"))
    ckpt = load_model("torchvision:resnet18", num_classes=3, weights=tmp_path / "w.safetensors")
    props = model_props(ckpt)
    moved = tmp_path / "home" / "models" / "sub" / "renamed.safetensors"
    moved.parent.mkdir(parents=True)
    (tmp_path / "w.safetensors").rename(moved)
    assert find_by_hash(props["file_sha256"]) == moved
    again = reload_model(props["source"], sha256=props["key"], file_hash=props["file_sha256"])
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(again.model(x), ref(x)) and again.path == moved.resolve()
    moved.unlink()
    with pytest.raises(CheckpointError, match="is gone"):
        reload_model(props["source"], sha256=props["key"], file_hash=props["file_sha256"])
    save_file(_resnet(3).state_dict() | {"fc.bias": torch.ones(3)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="other weights"):
        reload_model(props["source"], sha256=props["key"], override=tmp_path / "other.safetensors")


def test_deepatlas_checkpoint_reloads_from_its_source(tmp_path: Path) -> None:
    ckpt = load_model(_checkpoint(tmp_path))
    props = model_props(ckpt)
    assert json.loads(props["source"]) == {"spec": str((tmp_path / "m.pt").resolve())}
    assert reload_model(props["source"], sha256=props["key"]).sha256 == ckpt.sha256


def test_class_names_from_the_data_only_when_the_counts_agree() -> None:
    ckpt = load_model("torchvision:resnet18", num_classes=3)
    with pytest.raises(CheckpointError, match=r"has 3 outputs and no class names.*4 classes"):
        complete_metadata(ckpt, (3, 32, 32), ("a", "b", "c", "d"), "imagefolder-x")
    complete_metadata(ckpt, (3, 32, 32), ("a", "b", "c"), "imagefolder-x")
    assert ckpt.class_names == ("a", "b", "c") and ckpt.meta["input_shape"] == [3, 224, 224]
    named = load_model("torchvision:resnet18", num_classes=3)
    named.meta["class_names"] = ["a", "b"]
    with pytest.raises(CheckpointError, match="2 class names but 3 outputs"):
        complete_metadata(named, (3, 32, 32), ("a", "b"), "imagefolder-x")


OUTPUTS = '''
import torch
from torch import nn


class Scores(nn.Module):
    def __init__(self, num_classes=3):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4, num_classes)

    def features(self, x):
        return self.relu(self.conv(x)).mean((2, 3))


class TupleOut(Scores):
    def forward(self, x):
        h = self.features(x)
        return self.fc(h), h


class DictOut(Scores):
    def forward(self, x):
        h = self.features(x)
        return {"logits": self.fc(h), "features": h}


class Ambiguous(Scores):
    def forward(self, x):
        h = self.features(x)
        return {"a": self.fc(h), "b": h}


def tuple_out(num_classes=3):
    return TupleOut(num_classes)


def dict_out(num_classes=3):
    return DictOut(num_classes)


def ambiguous(num_classes=3):
    return Ambiguous(num_classes)
'''


def test_models_returning_a_tuple_or_a_dict_give_their_class_scores(tmp_path: Path) -> None:
    (tmp_path / "outs.py").write_text(OUTPUTS)
    x = torch.rand(2, 3, 8, 8)
    for factory in ("tuple_out", "dict_out"):
        ckpt = load_model(f"{tmp_path}/outs.py:{factory}", input_shape=[3, 8, 8])
        with torch.no_grad():
            out = ckpt.model(x)
            want = ckpt.model.fc(ckpt.model.features(x))
        assert isinstance(out, torch.Tensor) and torch.equal(out, want)  # the scores, first / under "logits"
    ckpt = load_model(f"{tmp_path}/outs.py:ambiguous", input_shape=[3, 8, 8])
    with pytest.raises(UsageError, match="dict with keys a, b"):
        ckpt.model(x)


def test_a_model_file_that_exits_is_an_error_not_deepatlas_exiting(tmp_path: Path) -> None:
    """sys.exit(0) in a factory made `ingest` exit 0 with nothing done: a CI step would pass."""
    (tmp_path / "exits.py").write_text("import sys\n\ndef build(num_classes=3):\n    sys.exit(0)\n")
    with pytest.raises(UsageError, match=r"called sys.exit\(0\) instead of returning a model"):
        load_model(f"{tmp_path}/exits.py:build")
    (tmp_path / "exits_on_import.py").write_text("import sys\nsys.exit(3)\n")
    with pytest.raises(UsageError, match=r"called sys.exit\(3\)"):
        load_model(f"{tmp_path}/exits_on_import.py:build")
    with pytest.raises(UsageError, match="name the function"):
        load_model(f"{tmp_path}/exits.py:")
