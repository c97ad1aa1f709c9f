"""Vega-Lite specs for the page's charts, written as plain dicts.

``st.line_chart`` builds its charts through Altair, whose schema validation costs about
0.1-0.3 s per chart: with ten charts that alone would exceed the refresh budget.  A
hand-written spec handed to ``st.vega_lite_chart`` costs milliseconds.
"""

from __future__ import annotations

from typing import Any

import pandas as pd


def long_form(wide: pd.DataFrame, series: str = "series", value: str = "value") -> tuple[pd.DataFrame, str]:
    """Wide frame (index = x, one column per series) → long frame with columns x, series, value."""
    x = wide.index.name or "x"
    long = wide.reset_index(names=x).melt(id_vars=x, var_name=series, value_name=value)
    return long, x


def line_spec(x: str, x_type: str, y_title: str, height: int, series: str = "series",
              value: str = "value", y_domain: list[float] | None = None) -> dict[str, Any]:
    y: dict[str, Any] = {"field": value, "type": "quantitative", "title": y_title}
    if y_domain is not None:
        y["scale"] = {"domain": y_domain}
    x_enc: dict[str, Any] = {"field": x, "type": x_type, "title": x}
    if x_type == "temporal":
        # runs are minutes to hours long: wall-clock seconds read better than vega's millisecond ticks
        x_enc["axis"] = {"format": "%H:%M:%S", "labelOverlap": True}
    return {
        "height": height,
        "mark": {"type": "line", "interpolate": "linear", "tooltip": True},
        "encoding": {
            "x": x_enc,
            "y": y,
            "color": {"field": series, "type": "nominal", "title": None, "legend": {"orient": "bottom"}},
        },
    }


def bar_spec(category: str, height: int, series: str = "series", value: str = "value") -> dict[str, Any]:
    return {
        "height": height,
        "mark": {"type": "bar", "tooltip": True},
        "encoding": {
            "x": {"field": category, "type": "nominal", "title": None, "axis": {"labelAngle": 0}},
            "xOffset": {"field": series},
            "y": {"field": value, "type": "quantitative", "title": "recordings"},
            "color": {"field": series, "type": "nominal", "title": None, "legend": {"orient": "bottom"}},
        },
    }
