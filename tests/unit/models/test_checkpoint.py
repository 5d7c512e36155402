from __future__ import annotations

from pathlib import Path

import pytest
import torch

from deepatlas.errors import CheckpointError
from deepatlas.models import MLP, FashionCNN, load_checkpoint, save_checkpoint

META = {"class_names": [str(i) for i in range(10)], "input_shape": [1, 28, 28], "mean": 0.5, "std": 0.25, "accuracy": 0.5}


def _save(tmp_path: Path) -> Path:
    torch.manual_seed(1)
    model = FashionCNN(1, 10, (2, 3, 4), 5, 28)
    return save_checkpoint(tmp_path / "m.pt", model, "fashion_cnn",
                           {"in_channels": 1, "n_classes": 10, "widths": [2, 3, 4], "hidden": 5, "input_size": 28}, META)


def test_round_trip_keeps_weights_and_metadata(tmp_path: Path) -> None:
    path = _save(tmp_path)
    ckpt = load_checkpoint(path)
    torch.manual_seed(1)
    fresh = FashionCNN(1, 10, (2, 3, 4), 5, 28)
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(ckpt.model(x), fresh.eval()(x))
    assert ckpt.class_names == tuple(META["class_names"]) and len(ckpt.sha256) == 64
    assert torch.allclose(ckpt.normalize(torch.full((1,), 0.75)), torch.tensor([1.0]))


def test_truncated_checkpoint(tmp_path: Path) -> None:
    path = _save(tmp_path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path)


def test_flipped_weight_bytes_are_caught(tmp_path: Path) -> None:
    path = _save(tmp_path)
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["fc2.bias"][0] += 1.0  # still a valid archive, wrong weights
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(path)


def test_checkpoint_of_another_architecture(tmp_path: Path) -> None:
    path = _save(tmp_path)
    payload = torch.load(path, weights_only=True)
    payload["state_dict"] = MLP(784, (8,), 10).state_dict()
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="does not fit architecture fashion_cnn"):
        load_checkpoint(path)


def test_not_a_checkpoint_and_missing(tmp_path: Path) -> None:
    (tmp_path / "x.pt").write_bytes(b"hello")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(tmp_path / "x.pt")
    torch.save({"a": torch.zeros(1)}, tmp_path / "y.pt")
    with pytest.raises(CheckpointError, match="not a deepatlas checkpoint"):
        load_checkpoint(tmp_path / "y.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_unknown_arch(tmp_path: Path) -> None:
    path = _save(tmp_path)
    payload = torch.load(path, weights_only=True)
    payload["arch"] = "resnet999"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="unknown architecture"):
        load_checkpoint(path)


def test_a_protocol_4_pickle_that_calls_code_is_named_as_such_not_as_corrupt(tmp_path: Path) -> None:
    import os
    import pickle

    from deepatlas.models.checkpoint import safe_torch_load

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "weights.pt"
    evil.write_bytes(pickle.dumps(Payload(), protocol=4))
    with pytest.raises(CheckpointError, match=r"a pickle that would run code when loaded \(it imports posix.system\)"):
        safe_torch_load(evil)
    assert not marker.exists()
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x80\x04garbage")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        safe_torch_load(junk)
