"""Figures at the sizes real runs give them: k axes at the k values, many layers and units,
maps on one colour scale, long layer names in panel titles."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

import deepatlas.report.attribution as attribution
import deepatlas.report.experiments as experiments
import deepatlas.report.factors as factors
import deepatlas.report.figures as figures


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[Figure]:
    """Every figure a report function saves, drawn and kept open for inspection."""
    kept: list[Figure] = []

    def keep(fig: Figure, path: Path, **kwargs: Any) -> Path:
        if kwargs.get("tight", True):
            fig.tight_layout()
        fig.canvas.draw()
        kept.append(fig)
        return path

    for module in (attribution, experiments, factors, figures):
        monkeypatch.setattr(module, "save", keep)
    return kept


def knockout_result(ks: list[int]) -> dict[str, Any]:
    e = (np.array(ks) / max(ks)).tolist()
    curve = {"k": ks, "class_error": e, "error": e}
    return {"class": "tabby", "layer": "features.denseblock4", "by": "coactivation", "top": curve, "bottom": curve,
            "random": {"k": ks, "class_error_mean": e, "class_error_std": [0.0] * len(ks), "error_mean": e}}


@pytest.mark.parametrize("ks", [[0, 1, 2, 4, 8, 16, 32, 64], [1, 2, 4, 8, 16, 32, 64]])
def test_the_knockout_axis_is_ticked_and_labelled_at_the_k_values(drawn: list[Figure], tmp_path: Path,
                                                                   ks: list[int]) -> None:
    experiments.knockout_figure(knockout_result(ks), "run", tmp_path / "k.png")
    ax = drawn[0].axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(k) for k in ks]
    assert list(ax.get_xticks()) == ks
    assert not ax.xaxis.get_minorticklocs().size  # no unlabelled ticks between the k values
    where = ax.transData.transform([(k, 0) for k in ks])[:, 0]
    steps = np.diff(where)
    assert np.allclose(steps, steps[0], rtol=1e-6)  # doublings (and 0 to 1) evenly apart


def test_many_k_values_keep_their_ticks_but_labels_do_not_touch(drawn: list[Figure], tmp_path: Path) -> None:
    ks = list(range(0, 101))
    experiments.knockout_figure(knockout_result(ks), "run", tmp_path / "k.png")
    ax = drawn[0].axes[0]
    renderer = drawn[0].canvas.get_renderer()  # type: ignore[attr-defined]
    labels = [t for t in ax.get_xticklabels() if t.get_text()]
    assert labels[0].get_text() == "0" and labels[-1].get_text() == "100"
    boxes = [t.get_window_extent(renderer) for t in labels]
    assert not any(a.overlaps(b) for a, b in combinations(boxes, 2))


LAYER = "features.denseblock4.denselayer16"


@pytest.mark.parametrize(("units", "layers"), [(64, 1), (2_000, 5), (40_000, 17), (2_000, 20), (40_000, 1)])
def test_factor_heatmaps_stay_bounded_and_say_what_they_show(drawn: list[Figure], tmp_path: Path, units: int,
                                                             layers: int) -> None:
    gen = torch.Generator().manual_seed(0)
    loadings = {f"{LAYER}.conv{i}": torch.rand(units, 8, generator=gen) for i in range(layers)}
    factors.factor_heatmaps(loadings, tmp_path / "f.png")
    fig = drawn[0]
    w, h = fig.get_size_inches() * fig.dpi
    assert w <= factors.MAX_FIGURE_PX and h <= factors.MAX_FIGURE_PX
    panels = [ax for ax in fig.axes if ax.get_images() and ax.get_title()]
    assert len(panels) == layers
    ncols = {round(ax.get_position().x0, 3) for ax in panels}
    assert len(ncols) <= factors.FACTOR_COLUMNS  # wrapped into a grid, not one long strip
    for i, ax in enumerate(panels):
        title = ax.get_title().replace("\n", "")
        assert f"conv{i}" in title
        rows = ax.get_images()[0].get_array().shape[0]  # type: ignore[union-attr]
        assert rows <= factors.MAX_UNIT_ROWS
        if units > factors.MAX_UNIT_ROWS:
            assert f"{rows:,} of {units:,} units: top {factors.MAX_UNIT_ROWS // 8} per factor" in title
        else:
            assert f"all {units:,} units" in title
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    boxes = [ax.title.get_window_extent(renderer) for ax in panels]
    assert not any(a.overlaps(b) for a, b in combinations(boxes, 2))


def test_top_units_are_the_largest_loadings_of_each_factor() -> None:
    q = np.zeros((1_000, 3))
    q[[5, 6], 0] = [2.0, 1.0]
    q[[7, 8], 1] = [1.0, 3.0]
    q[[9, 5], 2] = [1.0, 0.5]  # unit 5 is already factor 0's
    groups, per = factors.top_units(q, most=6)
    assert per == 2
    assert [g.tolist()[:2] for g in groups] == [[5, 6], [8, 7], [9, groups[2][1]]]
    assert groups[2][1] != 5
    everything, n = factors.top_units(q[:10], most=256)
    assert n == 10 and everything[0].tolist() == list(range(10))


def test_input_score_maps_on_a_shared_scale_share_one_clim_and_one_bar(drawn: list[Figure], tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    maps = [(f"class {i}", rng.normal(size=(16, 16)) * 10.0 ** -i) for i in range(5)]
    attribution.input_score_grid(rng.random((3, 16, 16)), maps, tmp_path / "s.png", shared_scale=True)
    fig = drawn[0]
    images = [im for ax in fig.axes for im in ax.get_images() if isinstance(im, AxesImage)]
    clims = {im.get_clim() for im in images if im.get_cmap().name == "RdBu_r"}
    top = max(float(np.abs(m).max()) for _, m in maps)
    assert clims == {(-top, top)}
    bars = [ax for ax in fig.axes if "shared scale" in ax.get_ylabel()]
    assert len(bars) == 1  # one colour bar, saying it is the shared one
    assert "shared scale" in fig.get_supxlabel()


def test_input_score_maps_default_to_their_own_scales_and_say_so(drawn: list[Figure], tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    maps = [(f"class {i}", rng.normal(size=(16, 16)) * 10.0 ** -i) for i in range(3)]
    attribution.input_score_grid(rng.random((16, 16)), maps, tmp_path / "s.png")
    fig = drawn[0]
    clims = [im.get_clim() for ax in fig.axes for im in ax.get_images() if im.get_cmap().name == "RdBu_r"]
    assert len(set(clims)) == 3
    assert sum(ax.get_ylabel() == "own scale" for ax in fig.axes) == 3
    assert "own scale" in fig.get_supxlabel()


@pytest.mark.parametrize(("n", "columns"), [(6, 6), (10, 5), (10, 6)])
def test_neuron_heatmap_titles_with_long_layer_names_do_not_overlap(drawn: list[Figure], tmp_path: Path, n: int,
                                                                    columns: int) -> None:
    maps = [(f"Egyptian cat #{i % 3 + 1}: {LAYER}:{1000 + i}", np.zeros((28, 28))) for i in range(n)]
    figures.heatmap_grid(maps, tmp_path / "h.png", columns=columns,
                         title="imagenet: pixel correlations of each class's top 3 neurons")
    fig = drawn[0]
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    panels = [ax for ax in fig.axes if ax.get_images() and ax.get_title()]
    assert len(panels) == n
    for i, ax in enumerate(panels):
        assert ax.get_title().endswith(f":{1000 + i}")  # the unit index stays visible
    titles = [ax.title.get_window_extent(renderer) for ax in panels]
    assert not any(a.overlaps(b) for a, b in combinations(titles, 2))
    for i, box in enumerate(titles):  # nor does a title run into another panel's map
        assert not any(box.overlaps(ax.get_images()[0].get_window_extent(renderer))
                       for j, ax in enumerate(panels) if j != i)
    suptitle = fig._suptitle.get_window_extent(renderer)  # type: ignore[attr-defined]
    assert not any(suptitle.overlaps(b) for b in titles)


def test_wrap_title_keeps_the_end_of_a_name_too_long_for_its_lines() -> None:
    assert figures.wrap_title("short", 30) == "short"
    wrapped = figures.wrap_title(f"tabby cat #1: {LAYER}:1234", 24)
    assert wrapped.split("\n")[0] == "tabby cat #1:"
    assert all(len(line) <= 24 for line in wrapped.split("\n"))
    assert wrapped.replace("\n", "") == f"tabby cat #1:{LAYER}:1234"
    cut = figures.wrap_title("x: " + ".".join(f"block{i}" for i in range(30)) + ":77", 20, max_lines=3)
    assert len(cut.split("\n")) == 3 and cut.endswith(":77") and "..." in cut
