"""`deepatlas inspect`'s plan against the ingest it plans, on a stock model; and an ingest the
machine could not hold is refused before any work."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from deepatlas.data.photo_patches import write_photo_patches
from deepatlas.db.graph import Graph
from deepatlas.db.runs import find_run
from deepatlas.errors import UsageError
from deepatlas.workflows.build import ingest
from deepatlas.workspace import DataSource, ModelSource, Workspace

pytestmark = pytest.mark.e2e

CLI = [sys.executable, "-m", "deepatlas"]


@pytest.fixture(scope="module")
def densenet(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], Path]:
    root = tmp_path_factory.mktemp("budget")
    photos = write_photo_patches(root / "photos", per_class=8, test_per_class=1, size=64)
    torch.manual_seed(0)
    net = torchvision.models.densenet121(weights=None, num_classes=8)
    weights = root / "densenet.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(weights))
    return ["--model", "torchvision:densenet121", "--num-classes", "8", "--weights", str(weights), "--input-size",
            "3x64x64"], photos


def test_the_plans_peak_is_within_one_and_a_half_times_the_measured_one(neo4j_server, densenet) -> None:  # type: ignore[no-untyped-def]
    model, photos = densenet
    plan = subprocess.run([*CLI, "inspect", *model, "--images", "64", "--json"], capture_output=True, text=True)
    assert plan.returncode == 0, plan.stderr
    est = json.loads(plan.stdout)["estimate"]
    run = subprocess.run([*CLI, "ingest", *model, "--data", f"imagefolder:{photos}", "--split", "train", "--run", "budget",
                          "--device", "cpu", "--json"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    measured = json.loads(run.stdout)["memory_mb"]  # each stage's peak; the largest is the process's (VmHWM)
    peak = max(measured.values())
    assert 1 / 1.5 <= est["peak_mb"] / peak <= 1.5, (est["peak_mb"], peak, est["memory_mb"], measured)
    # the stage the plan expects to dominate is among the measured ones
    assert max(est["memory_mb"], key=est["memory_mb"].get) in measured


def test_an_ingest_the_machine_cannot_hold_is_refused_before_any_work(neo4j_server, densenet,  # type: ignore[no-untyped-def]
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import deepatlas.memory

    model, photos = densenet
    monkeypatch.setattr(deepatlas.memory, "available_mb", lambda: 100.0)  # a machine with 100 MB free
    ws = Workspace(run="too-big", model=ModelSource("torchvision:densenet121", weights=model[5], num_classes=8,
                                                    input_shape=[3, 64, 64]),
                   data=DataSource(f"imagefolder:{photos}", "train"), device="cpu")
    with ws, pytest.raises(UsageError, match=r"100 MB are free.*--"):
        ingest(ws)
    with Graph(autostart=False) as g:
        assert find_run(g, "too-big") is None  # nothing was written
