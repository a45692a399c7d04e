"""Numbers written for people and the one colour language of the figures."""
import json

import numpy as np
import pytest
from plotly.utils import PlotlyJSONEncoder

from cnn.core.text import accuracy_text, date_text, markdown_text, plot_text, probability_text
from cnn.figures.lessons import channels_row, maps_row, values_heatmap
from cnn.figures.pictures import colorize, feature_maps, kernels_grid, mosaic
from cnn.figures.style import SIGNED, UNSIGNED, value_style


@pytest.mark.parametrize("p, text", [(1.0, "> 99.9%"), (0.99996, "> 99.9%"), (0.9995, "> 99.9%"),
                                     (0.99949, "99.9%"), (0.5, "50.0%"), (0.0005, "0.1%"), (0.00049, "< 0.1%"),
                                     (0.0, "< 0.1%"), (float("nan"), "–")])
def test_probabilities_never_read_as_certain(p, text):
    assert probability_text(p) == text


def test_probability_text_with_whole_percentages():
    assert probability_text(0.996, 0) == "> 99%" and probability_text(0.004, 0) == "< 1%"
    assert probability_text(0.42, 0) == "42%"


def test_accuracy_and_dates():
    assert accuracy_text(1.0) == "100.00%" and accuracy_text(None) == "–" and accuracy_text(0.9705) == "97.05%"
    assert date_text("2026-11-23T04:39:07+00:00") == "23 Nov 2026, 04:39 UTC"
    assert date_text("yesterday") == "yesterday"


def test_signed_values_get_a_diverging_scale_centred_on_zero():
    style = value_style(np.array([[-2.0, 0.5], [1.0, 0.0]]), legend="weight")
    assert style["colorscale"] == SIGNED and style["zmin"] == -2.0 and style["zmax"] == 2.0
    assert style["colorbar"]["ticktext"][0].endswith("negative") and style["colorbar"]["ticktext"][-1].endswith(
        "positive")


def test_non_negative_values_get_a_sequential_scale_from_zero():
    style = value_style(np.array([0.0, 3.0, 1.5]))
    assert style["colorscale"] == UNSIGNED and style["zmin"] == 0.0 and style["zmax"] == 3.0
    # Asked for explicitly, a signed quantity keeps the diverging scale even when nothing is negative.
    assert value_style(np.array([0.0, 3.0]), signed=True)["colorscale"] == SIGNED


def bar(fig):
    """The colour bar of a picture figure: the marker of its one scatter trace."""
    return next(t.marker for t in fig.data if t.type == "scatter")


def test_every_figure_speaks_the_same_language():
    after_relu = np.abs(np.random.default_rng(0).normal(size=(6, 6, 4)))
    with_negatives = after_relu - 0.5
    relu = bar(feature_maps(after_relu, "maps"))
    assert relu.cmin == 0.0 and relu.colorscale == bar(feature_maps(after_relu, "again")).colorscale
    signed = bar(feature_maps(with_negatives, "maps"))
    assert signed.cmin == -signed.cmax < 0
    assert signed.colorbar.ticktext[0].endswith("negative")
    kernels = bar(kernels_grid(np.random.default_rng(1).normal(size=(4, 3, 3, 1)), "kernels"))
    assert kernels.cmin == -kernels.cmax < 0 and kernels.colorbar.title.text == "weight"
    row = maps_row({"before": with_negatives[..., 0], "after": after_relu[..., 0]}, kind=["signed", "unsigned"]).data
    assert row[0].zmin == -row[0].zmax and row[1].zmin == 0.0
    pixels = values_heatmap(np.full((3, 3), 0.5), kind="pixels", pixel_max=1).data[0]
    assert (pixels.zmin, pixels.zmax) == (0, 1)
    # Small maps in one figure (Learn's patch, kernel and products): values written in, every panel square.
    small = maps_row({"patch": np.full((3, 3), 0.5), "kernel": -np.eye(3)}, kind=["pixels", "signed"], fmt=".2f",
                     pixel_max=1)
    assert small.data[0].text[0] == ["0.50"] * 3 and small.data[1].text[1][1] == "-1.00"
    assert (small.data[0].zmin, small.data[0].zmax) == (0, 1) and small.data[1].zmin == -small.data[1].zmax
    assert (small.layout.yaxis.scaleanchor, small.layout.yaxis2.scaleanchor) == ("x", "x2")


def test_pictures_colour_values_by_the_scale():
    style = value_style(np.array([-2.0, 2.0]))
    rgb = colorize(np.array([[-2.0, 0.0, 2.0, np.nan]]), style)[0].astype(int)
    assert rgb[0][2] > rgb[0][0]  # the most negative value is blue
    assert rgb[2][0] > rgb[2][2]  # the most positive red
    assert abs(int(rgb[1].max()) - int(rgb[1].min())) < 12 and rgb[1].min() > 230  # 0 is (almost) white
    assert rgb[3].tolist() == [255, 255, 255]  # gaps between maps are white
    grid, corners = mosaic(np.ones((5, 2, 3)), columns=2, gap=1)
    assert grid.shape == (3 * 3 - 1, 2 * 4 - 1) and corners[3] == (3, 4) and np.isnan(grid[2, 0])


def test_colour_channels_share_one_scale_in_their_own_colour():
    triangle = np.zeros((8, 8, 3), np.uint8)
    triangle[2:6, 2:6] = (200, 30, 30)
    panels = channels_row(triangle).data
    assert [(t.zmin, t.zmax) for t in panels] == [(0, 255)] * 3  # a red object is dark in green and blue
    assert [t.colorscale[-1][1] for t in panels] == ["#ff0000", "#00c000", "#0050ff"]


def test_square_grid_keeps_the_values_in_order_and_blanks_the_rest():
    from cnn.figures.pictures import square_grid

    grid = square_grid(np.arange(10), 7)
    assert grid.shape == (3, 3)
    assert grid.ravel()[:7].tolist() == list(range(7)) and np.isnan(grid.ravel()[7:]).all()


@pytest.mark.parametrize("name", ["**bold**", "[click](https://x.example)", ":red[alarm]", ":material/home:",
                                  "# head", "a_b_c", "`code`", "$x^2$", "<b>x</b>"])
def test_a_class_name_is_shown_literally_in_markdown(name):
    import markdown_it

    rendered = markdown_it.MarkdownIt().renderInline(markdown_text(name))
    assert "<strong>" not in rendered and "<a " not in rendered and "<code>" not in rendered
    assert "\\" not in rendered  # every escape is consumed: the reader sees the name itself
    assert ":" not in markdown_text(name).replace("\\:", "")  # no Streamlit colour or icon directive can start


def test_one_enlarger_keeps_pixels_square_and_sharp():
    from cnn.figures.pictures import enlarge

    grey = np.arange(4, dtype=np.uint8).reshape(2, 2, 1)
    big = enlarge(grey, 3)
    assert big.shape == (6, 6) and big.dtype == np.uint8  # grey comes back 2-D, for st.image
    assert (big[:3, :3] == 0).all() and (big[3:, 3:] == 3).all()  # each pixel a sharp 3×3 square
    colour = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    np.testing.assert_array_equal(enlarge(colour, 4), np.kron(colour, np.ones((4, 4, 1), np.uint8)))
    assert enlarge(np.zeros((28, 28, 1), np.uint8), side=196).shape == (196, 196)  # about `side` px
    assert enlarge(np.zeros((32, 32, 3), np.float32), side=84).shape == (64, 64, 3)  # never smaller, whole steps


def test_a_class_name_is_shown_literally_in_every_class_figure():
    from cnn.figures.curves import confusion_heatmap
    from cnn.figures.pictures import embedding_scatter, sweep_lines
    from cnn.figures.probabilities import distance_bars, probabilities_bar, temperature_bars

    names = ["<b>bold</b>", "a&b", "<a href='javascript:alert(1)'>x</a>"]
    typical = {"p50": 1.0, "p95": 2.0, "p99": 3.0}
    figures = [confusion_heatmap(np.eye(3, dtype=int), names), probabilities_bar([0.2, 0.5, 0.3], names),
               temperature_bars(names, [0.2, 0.5, 0.3], [0.3, 0.4, 0.3], 1.5),
               distance_bars(names, [1.0, 2.0, 3.0], typical),
               sweep_lines([0, 1], np.full((2, 3), 1 / 3), names, "shift"),
               embedding_scatter(np.zeros((3, 2)), np.arange(3), np.arange(3), np.arange(3), names)]
    for fig in figures:
        text = json.dumps(fig.to_plotly_json(), cls=PlotlyJSONEncoder)  # to_json would hide '<' as \\u003c
        assert "<b>" not in text and "<a " not in text and "&lt;b&gt;bold&lt;/b&gt;" in text, text[:300]
        assert "a&amp;b" in text  # Plotly turns the entities back into the name itself
    assert plot_text("circle") == "circle" and plot_text("<b>&") == "&lt;b&gt;&amp;"  # plain names stay as they are
