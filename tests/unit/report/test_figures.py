"""What a reader sees in the figures: quantities named, nothing overlapping, axes not stretched."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.figure import Figure

import deepatlas.report.attribution as attribution
import deepatlas.report.factors as factors
import deepatlas.report.figures as figures


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[Figure]:
    """Every figure a report function saves, kept open (and still written) for inspection."""
    kept: list[Figure] = []

    def keep(fig: Figure, path: Path, **kwargs: Any) -> Path:
        fig.canvas.draw()
        kept.append(fig)
        fig.savefig(tmp_path / "x.png", bbox_inches=kwargs.get("bbox_inches"))
        return path

    for module in (attribution, factors, figures):
        monkeypatch.setattr(module, "save", keep)
    return kept


def test_spectra_are_cut_at_a_floor_and_say_so(drawn: list[Figure], tmp_path: Path) -> None:
    spectrum = [*np.logspace(0, -3, 31).tolist(), 1e-18]  # one numerically-zero value (a dead unit)
    factors.spectra_figure({"a.pt": {"relu2": spectrum}}, tmp_path / "s.png")
    ax = drawn[0].axes[0]
    assert ax.get_ylim()[0] >= factors.SPECTRUM_FLOOR / 2  # not 15 empty decades
    assert any("1 value(s) < 1e-06" in t.get_text() for t in ax.texts)


def test_a_single_map_keeps_its_title_clear_of_the_panel_and_names_the_colour_bar(drawn: list[Figure], tmp_path: Path) -> None:
    figures.heatmap_grid([("gate of each input pixel", np.eye(28))], tmp_path / "g.png", columns=1,
                         title="run\npixels that keep Trouser's predictions", cmap="Greens", vmin=0, vmax=1,
                         label="gate (0 closed, 1 open)")
    fig = drawn[0]
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    suptitle = fig._suptitle.get_window_extent(renderer)  # type: ignore[attr-defined]
    panel = fig.axes[0].title.get_window_extent(renderer)
    assert not suptitle.overlaps(panel)
    assert fig.axes[-1].get_ylabel() == "gate (0 closed, 1 open)"  # the colour bar's axes
    assert fig.get_size_inches()[0] >= 3.0  # room for the bar and its label beside one map


def test_the_feature_figure_names_its_gradient(drawn: list[Figure], tmp_path: Path) -> None:
    attribution.feature_figure(np.zeros((28, 28)), (1, 1, 3, 3), np.ones((7, 7)), np.eye(7), tmp_path / "f.png",
                               title="t", gradient_label="d logit(Coat) / d activation")
    assert "d logit(Coat) / d activation" in [ax.get_ylabel() for ax in drawn[0].axes]
