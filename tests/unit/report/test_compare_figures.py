"""The comparison figures: every layer named, one label per spot, no two labels on each other."""

from __future__ import annotations

import itertools
from pathlib import Path
from types import SimpleNamespace

import matplotlib.pyplot as plt
import pytest

from deepatlas.report import compare


def _pairs(n: int) -> list[dict[str, object]]:
    out = []
    for i, (a, b) in enumerate(itertools.combinations([f"class{k}" for k in range(n)], 2)):
        out.append({"a": a, "b": b, "mistakes_change": (i % 7) - 3 if i > 3 else 2, "jaccard_change": 0.0 if i % 3 else 0.05})
    return sorted(out, key=lambda p: -p["mistakes_change"])  # type: ignore[operator]


def test_the_drift_figure_labels_each_spot_once_and_labels_do_not_overlap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rep = SimpleNamespace(base="v1", head="v2", pair_drift=_pairs(10), params={"top_k": 10})
    seen = {}
    real_save = compare.save

    def keep(fig, path, **kw):  # type: ignore[no-untyped-def]
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        seen["boxes"] = [t.get_window_extent(renderer) for t in fig.axes[0].texts]
        seen["texts"] = [t.get_text() for t in fig.axes[0].texts]
        return real_save(fig, path, **kw)

    monkeypatch.setattr(compare, "save", keep)
    compare.drift_figure(rep, tmp_path / "drift.png")
    texts = seen["texts"]
    assert texts and any("more" in t for t in texts)  # several pairs on one spot: one label that counts them
    assert any("(+2)" in t for t in texts) and any("(-3)" in t for t in texts)  # rises and falls both labelled
    for a, b in itertools.combinations(seen["boxes"], 2):
        assert not a.overlaps(b), (a, b)
    plt.close("all")


def test_the_cka_figure_names_every_layer_up_to_forty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}
    real_save = compare.save

    def keep(fig, path, **kw):  # type: ignore[no-untyped-def]
        seen["y"] = [t.get_text() for t in fig.axes[0].get_yticklabels()]
        seen["x"] = [t.get_text() for t in fig.axes[0].get_xticklabels()]
        return real_save(fig, path, **kw)

    monkeypatch.setattr(compare, "save", keep)
    layers = [f"features.block{i}" for i in range(12)]
    rep = SimpleNamespace(base="v1", head="v2", images=100, layers_base=layers, layers_head=layers[:8],
                          cka_means=[[0.5] * 8 for _ in layers], cka_flattened=None)
    path = compare.cka_figure(rep, tmp_path / "cka.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert seen["y"] == layers and seen["x"] == layers[:8]
    many = [f"l{i}" for i in range(100)]  # past 40 layers every n-th is named
    rep = SimpleNamespace(base="v1", head="v2", images=100, layers_base=many, layers_head=many,
                          cka_means=[[0.5] * 100 for _ in many], cka_flattened=None)
    compare.cka_figure(rep, tmp_path / "cka100.png")
    assert 20 <= len(seen["y"]) <= 40 and seen["y"][0] == "l0"
