"""The README's "Your own model" commands, run as written in a folder holding the files they name."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from safetensors.torch import save_file
from torch import nn
from typer.testing import CliRunner

from deepatlas.cli.app import app

pytestmark = pytest.mark.e2e
torch.set_num_threads(2)

README = Path(__file__).resolve().parents[2] / "README.md"
MY_NET = '''
import torch.nn as nn


def build():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4), nn.Flatten(),
                         nn.Linear(4 * 8 * 8, 8), nn.ReLU(), nn.Linear(8, 3))
'''


def _commands() -> list[list[str]]:
    text = README.read_text()
    section = text[text.index("### Your own model"):]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None
    return [shlex.split(line)[1:] for line in block.group(1).splitlines() if line.startswith("deepatlas ")]


def _fit(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    torch.manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(25):
        opt.zero_grad()
        nn.functional.cross_entropy(net.train()(x), y).backward()
        opt.step()
    with torch.no_grad():
        return float((net.eval()(x).argmax(1) == y).float().mean())


def test_readme_own_model_commands(neo4j_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(1)
    xs, ys = [], []
    for c, name in enumerate(("cat", "dog", "fox")):
        (tmp_path / "photos" / name).mkdir(parents=True)
        for i in range(10):
            img = rng.integers(0, 100, (32, 32, 3))
            img[:, :, c] += 150
            Image.fromarray(img.astype(np.uint8)).save(tmp_path / "photos" / name / f"{i}.png")
            xs.append(torch.from_numpy(img.astype(np.float32) / 255).permute(2, 0, 1))
            ys.append(c)
    x, y = torch.stack(xs), torch.tensor(ys)
    torch.manual_seed(0)
    resnet = torchvision.models.resnet18(weights=None, num_classes=3)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x64 = nn.functional.interpolate(x, size=(64, 64), mode="bilinear", antialias=True)
    assert _fit(resnet, (x64 - mean) / std, y) > 0.6
    save_file(resnet.state_dict(), "weights.safetensors")
    (tmp_path / "my_net.py").write_text(MY_NET)
    namespace: dict[str, object] = {}
    exec(MY_NET, namespace)
    net = namespace["build"]()  # type: ignore[operator]
    assert _fit(net, (x - 0.5) / 0.25, y) > 0.8
    torch.save(net.state_dict(), "my_net.pt")
    (tmp_path / "my_net.json").write_text(json.dumps({"class_names": ["cat", "dog", "fox"], "mean": 0.5, "std": 0.25}))
    commands = _commands()
    assert len(commands) == 3
    runner = CliRunner()
    for args in commands:
        r = runner.invoke(app, args)
        assert r.exit_code == 0, f"{shlex.join(args)}\n{r.output}"
    assert "dog" in r.output
