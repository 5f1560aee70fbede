"""Plots recorded by checks and drawn as inline SVG in the HTML sign-off."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from test_plugin import EXISTING

from pytest_stackcheck.report.plots import Plot, render_svg

SVG = "{http://www.w3.org/2000/svg}"


def _polylines(svg: str) -> list[str]:
    root = ET.fromstring(svg)
    return [line.get("points", "") for line in root.iter(SVG + "polyline")]


def test_series_drawn_as_lines():
    plot = Plot(
        "latency",
        "elapsed (s)",
        "latency (ms)",
        {"p50": [(0, 1), (1, 2), (2, 3)], "p99": [(0, 5), (1, 9)]},
    )

    lines = _polylines(render_svg(plot))

    # The first polyline is the axes; one per series follows.
    assert [len(points.split()) for points in lines[1:]] == [3, 2]


def test_step_plot_keeps_values():
    plot = Plot("state", "t", "healthy", {"web": [(0, 1), (2, 0), (3, 1)]}, step=True)

    lines = _polylines(render_svg(plot))

    assert len(lines[1].split()) == 5


def test_text_escaped_nan_dropped():
    plot = Plot(
        "<script>",
        "x & y",
        "y",
        {"<b>": [(0, float("nan")), (1, 1), (float("inf"), 2)]},
    )

    svg = render_svg(plot)

    assert "<script>" not in svg
    assert "&lt;b&gt;" in svg
    assert len(_polylines(svg)[1].split()) == 1


def test_plot_without_points_says_no_data():
    svg = render_svg(Plot("empty", "x", "y", {"a": []}))

    assert "no data" in svg
    ET.fromstring(svg)


@pytest.mark.parametrize(
    "series",
    [
        {"flat": [(0, 5), (10, 5)]},
        {"single": [(3, 3)]},
        {"tiny": [(0, 1e-9)]},
        {"tinier": [(0, 1e-15), (1e-15, 2e-15)]},
        {"huge": [(1e12, -1e12), (2e12, 1e12)]},
    ],
)
def test_degenerate_ranges_still_render(series):
    svg = render_svg(Plot("edge", "x", "y", series))

    assert "nan" not in svg.lower()
    ET.fromstring(svg)


def test_recorded_plot_reaches_the_html_signoff(pytester):
    profile = pytester.path / "unit.toml"
    profile.write_text(EXISTING)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.gate("day1", item="recovery is plotted")
        def test_recovery(evidence):
            evidence.plot(
                "recovery of web", {"web": [(0, 1), (1.5, 0), (2.0, 1)]},
                "seconds since the fault", "healthy", step=True,
            )
        """
    )
    report = pytester.path / "report"

    result = pytester.runpytest(f"--stack-file={profile}", f"--gate-report={report}")

    html = (report / "signoff.html").read_text()
    assert result.ret == pytest.ExitCode.OK
    assert "recovery of web" in html
    assert "<svg" in html
    assert "seconds since the fault" in html
