"""The book's figures: one style, labelled axes, readable at website width.

Shared by every chapter. Add a function per kind of figure; keep chapter-specific one-offs in the
chapter. Every function takes an optional ``ax`` and returns it.
"""

from __future__ import annotations

import matplotlib as mpl
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

    ``precision`` is a number of decimals or a format string such as ``"{:.2f}"``; ``index=False`` hides
    the row index.
    """
    fmt = precision if isinstance(precision, str) else f"{{:.{int(precision)}f}}"
    numeric = df.select_dtypes("number").columns
    style = df.style.format(fmt, subset=list(numeric), na_rep=na_rep).set_table_styles(COMPACT_CSS)
    return style if index else style.hide(axis="index")
