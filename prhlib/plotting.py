"""The book's figures: one style, labelled axes, readable at website width.

Shared by every chapter. Add a function per kind of figure; keep chapter-specific one-offs in the
chapter. Every function takes an optional ``ax`` and returns it.
"""

from __future__ import annotations

from . import _optional

_optional.ensure(("matplotlib", "seaborn"), "plots")

import matplotlib as mpl  # noqa: E402
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

#: Width of a full-width figure on the website, in inches (at 100 dpi: about 760 px).
FULL_WIDTH = 7.6
CHANCE_STYLE = dict(color="0.35", linestyle="--", linewidth=1.2)


def use_style() -> None:
    """The book's plot style: seaborn ticks, colour-blind palette, sizes readable on the website."""
    sns.set_theme(context="notebook", style="ticks", palette="colorblind", font_scale=0.95)
    mpl.rcParams.update(
        {
            "figure.figsize": (FULL_WIDTH, 4.0),
            "figure.dpi": 100,
            "savefig.dpi": 150,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.titleweight": "bold",
            "legend.frameon": False,
            "image.cmap": "viridis",
        }
    )


def chance_line(ax, value: float, label: str = "chance", orientation: str = "h"):
    """Draw a dashed chance (or calibration-threshold) line at ``value`` on ``ax`` and label it."""
    if orientation == "h":
        ax.axhline(value, **CHANCE_STYLE, label=label)
    else:
        ax.axvline(value, **CHANCE_STYLE, label=label)
    return ax


def annotated_heatmap(matrix, row_labels, col_labels, ax=None, fmt=".2f", cmap="viridis",
                      cbar_label: str = "", vmin=None, vmax=None, annot=None):
    """A labelled heat map with values written in each cell (``annot`` overrides the text)."""
    matrix = np.asarray(matrix, dtype=float)
    if ax is None:
        _, ax = plt.subplots(figsize=(min(FULL_WIDTH, 1.0 + 0.8 * len(col_labels)),
                                      min(6.0, 1.0 + 0.5 * len(row_labels))))
    sns.heatmap(matrix, ax=ax, annot=matrix if annot is None else annot, fmt=fmt if annot is None else "",
                cmap=cmap, vmin=vmin, vmax=vmax, xticklabels=col_labels, yticklabels=row_labels,
                cbar_kws={"label": cbar_label}, square=False, linewidths=0.5, linecolor="white")
    ax.tick_params(axis="x", rotation=30)
    ax.tick_params(axis="y", rotation=0)
    return ax


def plotly_html(fig, height: int = 560, div_id: str | None = None):
    """Show a plotly figure as self-contained HTML that renders on the website, in Colab and in Jupyter.

    The page loads plotly.js from its CDN through a plain ``<script>`` tag, so the built site needs no
    ``require.js`` (plotly's default notebook renderer does) and nothing in ``_config.yml``. A fixed
    pixel ``height`` is set because the website gives the output area no height of its own, and a
    fixed ``div_id`` keeps the output identical between executions.
    """
    from IPython.display import HTML

    fig.update_layout(height=height, autosize=True)
    html = fig.to_html(include_plotlyjs="cdn", full_html=False, div_id=div_id,
                       default_height=f"{height}px", default_width="100%", config={"responsive": True})
    return HTML(html)


#: CSS that lets a wide table fit the website's text column.
COMPACT_CSS = [{"selector": "th, td", "props": "font-size: 0.85em; padding: 2px 5px;"}]


def compact_table(df, precision: int | str = 3, index: bool = True, na_rep: str = ""):
    """A pandas ``Styler`` of ``df`` in the book's compact table style (fits the page).

    ``precision`` is a number of decimals or a format string such as ``"{:.2f}"`` for the float columns
    (integer columns such as counts are shown as they are); ``index=False`` hides the row index.
    """
    fmt = precision if isinstance(precision, str) else f"{{:.{int(precision)}f}}"
    numeric = df.select_dtypes("floating").columns   # integers (counts) stay as they are
    style = df.style.format(fmt, subset=list(numeric), na_rep=na_rep).set_table_styles(COMPACT_CSS)
    return style if index else style.hide(axis="index")


# ---------------------------------------------------------------------------------------------
# colours drawn in themselves (the colour chapter; moved here from prhlib.colors)
# ---------------------------------------------------------------------------------------------

def scatter_colors(ax, points, hexes, labels=None, size: float = 60.0, fontsize: float = 7.0):
    """Scatter 2-D ``points`` (n x 2) as dots filled with their own colours (``hexes``), a thin grey
    edge so that white shows on white, and optional text ``labels``. Returns ``ax``."""
    points = np.asarray(points, dtype=float)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) != len(hexes):
        raise ValueError(f"need n x 2 points and n colours, got {points.shape} and {len(hexes)}")
    ax.scatter(points[:, 0], points[:, 1], c=list(hexes), s=size, edgecolors="0.3", linewidths=0.6, zorder=3)
    if labels is not None:
        for (x, y), text in zip(points, labels):
            ax.annotate(text, (x, y), xytext=(3, 3), textcoords="offset points", fontsize=fontsize, zorder=4)
    return ax


def color_space_3d(layers: dict, title: str = ""):
    """An interactive plotly 3-D view of colour geometries in CIELAB coordinates.

    Parameters
    ----------
    layers : dict name -> (points (n, 3) as (L*, a*, b*), hexes (n,), labels (n,))
        One legend entry per geometry (click to hide or show it); the first is drawn as filled
        circles, the others with different marker symbols. Points are drawn in their own colours.

    Returns
    -------
    plotly.graph_objects.Figure with axes a* (x), b* (y) and L* (z, vertical).
    """
    import plotly.graph_objects as go

    symbols = ("circle", "diamond", "square", "cross", "x", "circle-open", "diamond-open", "square-open")
    fig = go.Figure()
    for k, (name, (pts, hexes, labels)) in enumerate(layers.items()):
        pts = np.asarray(pts, dtype=float)
        if pts.ndim != 2 or pts.shape[1] != 3 or not np.isfinite(pts).all():
            raise ValueError(f"{name!r}: points must be a finite n x 3 array of (L*, a*, b*), got {pts.shape}")
        fig.add_trace(go.Scatter3d(
            x=pts[:, 1], y=pts[:, 2], z=pts[:, 0], mode="markers", name=name,
            text=[f"{name}: {lab}" for lab in labels], hoverinfo="text",
            marker=dict(size=7 if k == 0 else 5, color=list(hexes), symbol=symbols[k % len(symbols)],
                        line=dict(color="#444444", width=1)),
        ))
    fig.update_layout(
        title=title, margin=dict(l=0, r=0, t=40 if title else 10, b=0), legend=dict(x=0.0, y=1.0),
        scene=dict(xaxis_title="a* (green - red)", yaxis_title="b* (blue - yellow)", zaxis_title="L* (lightness)",
                   aspectmode="cube"),
    )
    return fig
