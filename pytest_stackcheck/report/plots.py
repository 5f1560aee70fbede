"""Line plots for the HTML sign-off, drawn as inline SVG.

A check records a plot with ``evidence.plot(...)``; the data travels with the
test report like any other evidence, and this module draws it. SVG written by
hand keeps the sign-off one self-contained file and needs no plotting library.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

Point = tuple[float, float]

WIDTH = 640
HEIGHT = 260
MARGIN_LEFT = 60
MARGIN_RIGHT = 150
MARGIN_TOP = 16
MARGIN_BOTTOM = 40
TICKS = 5
# Colour-blind safe palette (Okabe and Ito, 2008).
COLOURS = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9")


@dataclass(frozen=True, slots=True)
class Plot:
    """A titled set of named series, each a list of (x, y) points."""

    title: str
    x_label: str
    y_label: str
    series: Mapping[str, Sequence[Point]]
    step: bool = False


def _nice_ticks(low: float, high: float) -> list[float]:
    """Return evenly spaced round values from at most ``low`` to at least ``high``."""
    if high - low <= abs(high) * 1e-9 or high - low < 1e-300:
        high = low + max(abs(low), 1.0)
    raw_step = (high - low) / TICKS
    magnitude = 10 ** math.floor(math.log10(raw_step))
    step = next(
        factor * magnitude
        for factor in (1, 2, 2.5, 5, 10)
        if factor * magnitude >= raw_step
    )
    first = math.floor(low / step)
    count = math.ceil(high / step) - first
    return [(first + index) * step for index in range(max(count, 1) + 1)]


def _format_tick(value: float) -> str:
    return f"{value:.4g}"


def render_svg(plot: Plot) -> str:
    """Return ``plot`` as an SVG element with axes, ticks and a legend.

    Points with a non-finite coordinate are left out. A plot with no finite
    point draws its axes and a note that there was no data.
    """
    series = {
        name: [(x, y) for x, y in points if math.isfinite(x) and math.isfinite(y)]
        for name, points in plot.series.items()
    }
    points = [point for values in series.values() for point in values]
    xs = [x for x, _ in points] or [0.0, 1.0]
    ys = [y for _, y in points] or [0.0, 1.0]
    x_ticks = _nice_ticks(min(xs), max(xs))
    y_ticks = _nice_ticks(min(0.0, min(ys)), max(ys))

    plot_width = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_height = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM

    def sx(x: float) -> float:
        span = x_ticks[-1] - x_ticks[0]
        return MARGIN_LEFT + (x - x_ticks[0]) / span * plot_width

    def sy(y: float) -> float:
        span = y_ticks[-1] - y_ticks[0]
        return MARGIN_TOP + plot_height - (y - y_ticks[0]) / span * plot_height

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" '
        f'aria-label="{escape(plot.title)}" font-family="sans-serif" font-size="11">'
    ]
    bottom = MARGIN_TOP + plot_height
    right = MARGIN_LEFT + plot_width
    for tick in y_ticks:
        y = sy(tick)
        parts.append(
            f'<line x1="{MARGIN_LEFT}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" '
            'stroke="#ddd"/>'
            f'<text x="{MARGIN_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{_format_tick(tick)}</text>"
        )
    for tick in x_ticks:
        x = sx(tick)
        parts.append(
            f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">'
            f"{_format_tick(tick)}</text>"
        )
    parts.append(
        f'<polyline points="{MARGIN_LEFT},{MARGIN_TOP} {MARGIN_LEFT},{bottom} '
        f'{right},{bottom}" fill="none" stroke="#333"/>'
        f'<text x="{MARGIN_LEFT + plot_width / 2:.1f}" y="{HEIGHT - 6}" '
        f'text-anchor="middle">{escape(plot.x_label)}</text>'
        f'<text transform="translate(14 {MARGIN_TOP + plot_height / 2:.1f}) '
        f'rotate(-90)" text-anchor="middle">{escape(plot.y_label)}</text>'
    )
    if not points:
        parts.append(
            f'<text x="{MARGIN_LEFT + plot_width / 2:.1f}" '
            f'y="{MARGIN_TOP + plot_height / 2:.1f}" text-anchor="middle">'
            "no data</text>"
        )
    for index, (name, values) in enumerate(series.items()):
        colour = COLOURS[index % len(COLOURS)]
        coordinates = _path_points(values, plot.step)
        drawn = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in coordinates)
        parts.append(
            f'<polyline points="{drawn}" fill="none" stroke="{colour}" '
            'stroke-width="1.5"/>'
        )
        legend_y = MARGIN_TOP + 12 + index * 16
        parts.append(
            f'<rect x="{right + 12}" y="{legend_y - 8}" width="10" height="10" '
            f'fill="{colour}"/><text x="{right + 26}" y="{legend_y + 1}">'
            f"{escape(name)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _path_points(values: Sequence[Point], step: bool) -> list[Point]:
    ordered = sorted(values)
    if not step:
        return ordered
    stepped: list[Point] = []
    for point in ordered:
        if stepped:
            stepped.append((point[0], stepped[-1][1]))
        stepped.append(point)
    return stepped
