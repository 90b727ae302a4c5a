"""The paper's figures are readable in print: size on paper, fonts, labels, legends, colours and markers.

Every figure is drawn from the small but realistic aggregate files of test_report.py, and each one is
inspected as it is saved: its width fits the text width and it is included unscaled (so a font's size
in matplotlib is its size on paper), no text is under 7 pt, every axis that shows data is labelled,
legends sit off the axes, point labels, tick labels and panel titles do not overprint one another, and each model has its own
colour and marker that stay apart in grayscale.
"""

from __future__ import annotations

import colorsys
import re

import matplotlib
import pytest

from conftest import REPO
from ssmvit import plots
from ssmvit.models import MODELS
from ssmvit.report import write_all
from test_report import make_inputs

matplotlib.use("Agg")


def _draw_and_inspect(agg, metrics, out) -> dict:
    """Draw every figure of ``agg`` into ``out``, recording what each looks like as it is saved."""
    seen = {}
    real_save = plots.save_figure

    def inspect_then_save(fig, path):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text().strip()]
        axes = [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]
        seen[path.name] = {
            "width_in": float(fig.get_size_inches()[0]),
            "fonts": sorted({round(t.get_fontsize(), 2) for t in texts}),
            "axes": [{"has_data": bool(ax.lines or ax.collections or ax.images or ax.patches or ax.containers),
                      "xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel(), "shared_y": _shares(ax, fig.axes, "y"),
                      "shared_x": _shares(ax, fig.axes, "x"),
                      "yticks": [t.get_text() for t in ax.get_yticklabels() if t.get_text()],
                      "tick_boxes": [[t.get_window_extent(renderer) for t in labels if t.get_visible() and t.get_text()]
                                     for labels in (ax.get_xticklabels(), ax.get_yticklabels())],
                      "title_box": ax.title.get_window_extent(renderer) if ax.get_title() else None,
                      "bbox": ax.get_window_extent(renderer)} for ax in axes],
            "legends": [lg.get_window_extent(renderer) for lg in fig.legends]
                       + [ax.get_legend().get_window_extent(renderer) for ax in axes if ax.get_legend()],
            "annotations": [[a.get_window_extent(renderer) for a in ax.texts if isinstance(a, matplotlib.text.Annotation)]
                            for ax in axes],
        }
        return real_save(fig, path)

    mp = pytest.MonkeyPatch()
    mp.setattr(plots, "save_figure", inspect_then_save)
    try:
        plots.make_all(agg, metrics, out)
    finally:
        mp.undo()
    return seen


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    p = make_inputs(tmp_path_factory.mktemp("figs"))
    seen = _draw_and_inspect(p["agg"], p["metrics"], p["figures"])
    write_all(p["config"], p["agg"], p["figures"], p["generated"])
    return {"seen": seen, "figures_tex": (p["generated"] / "figures.tex").read_text()}


@pytest.fixture(scope="module")
def drawn_reference(tmp_path_factory):
    """The committed reference study's figures, drawn again: real ranges (three models, MACs over two decades)."""
    metrics = sorted((REPO / "results/runs").glob("*/metrics.json"))
    return _draw_and_inspect(REPO / "results/aggregate", metrics, tmp_path_factory.mktemp("ref_figs"))


def _shares(ax, all_axes, which: str) -> bool:
    group = ax.get_shared_y_axes() if which == "y" else ax.get_shared_x_axes()
    return any(other is not ax and group.joined(ax, other) for other in all_axes)


def test_every_figure_is_drawn_at_print_width_and_included_unscaled(drawn):
    # paper/main.tex: US letter (8.5in) with 1in margins, so the text is 6.5in wide
    tex = (REPO / "paper/main.tex").read_text()
    assert r"\documentclass[11pt,letterpaper]{article}" in tex and r"\usepackage[margin=1in]{geometry}" in tex
    assert len(drawn["seen"]) >= 8
    for name, f in drawn["seen"].items():
        assert f["width_in"] <= 6.5 + 1e-6, name
        include = re.search(rf"\\includegraphics\[width=([^\]]+)\]{{[^}}]*/{re.escape(name)}}}", drawn["figures_tex"])
        assert include, name
        assert include.group(1) == f"{f['width_in']:g}in", (name, include.group(1))


def test_no_text_is_smaller_than_7pt_on_paper(drawn):
    for name, f in drawn["seen"].items():
        assert min(f["fonts"]) >= 7, (name, f["fonts"])


def test_every_axis_with_data_is_labelled_and_has_tick_labels(drawn):
    for name, f in drawn["seen"].items():
        for ax in f["axes"]:
            if not ax["has_data"]:
                continue
            assert ax["xlabel"].strip() or ax["shared_x"], name  # a panel above one with the same x axis
            assert ax["ylabel"].strip() or ax["shared_y"], name  # a panel sharing the y axis of its left neighbour
            assert ax["yticks"] or ax["shared_y"], (name, "no y tick labels")


def test_legends_sit_off_the_data_and_point_labels_do_not_overprint(drawn):
    for name, f in drawn["seen"].items():
        for legend in f["legends"]:
            for ax in f["axes"]:
                if ax["has_data"]:
                    assert not legend.overlaps(ax["bbox"]), name
        for boxes in f["annotations"]:
            for i, a in enumerate(boxes):
                for b in boxes[i + 1:]:
                    assert not a.overlaps(b), name


def test_each_model_has_its_own_colour_and_marker_apart_in_grayscale():
    models = list(MODELS)
    assert len({plots.MODEL_COLORS[m] for m in models}) == len(models)
    assert len({plots.MODEL_MARKERS[m] for m in models}) == len(models)

    def gray(hex_colour):
        r, g, b = (int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5))
        return 0.299 * r + 0.587 * g + 0.114 * b  # the luminance a grayscale print keeps

    lum = sorted(gray(plots.MODEL_COLORS[m]) for m in models[:3])
    assert min(b - a for a, b in zip(lum, lum[1:])) > 0.05, lum
    assert all(colorsys.rgb_to_hsv(*(int(plots.MODEL_COLORS[m][i:i + 2], 16) / 255 for i in (1, 3, 5)))[1] > 0.5
               for m in models[:3])  # saturated: not mistaken for the grays of the MAC counters


@pytest.mark.parametrize("which", ["fixture", "reference"])
def test_tick_labels_and_panel_titles_do_not_overprint(drawn, drawn_reference, which):
    seen = drawn["seen"] if which == "fixture" else drawn_reference
    assert len(seen) >= 8
    for name, f in seen.items():
        for i, ax in enumerate(f["axes"]):
            for boxes in ax["tick_boxes"]:
                for a, b in zip(boxes, boxes[1:]):
                    assert not a.overlaps(b), (name, i, "tick labels overprint")
        titles = [ax["title_box"] for ax in f["axes"] if ax["title_box"] is not None]
        for j, a in enumerate(titles):
            for b in titles[j + 1:]:
                assert not a.overlaps(b), (name, "panel titles overprint")
