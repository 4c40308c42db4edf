"""Charts and HTML pieces shared by the monitoring report and the data profile.

Charts are drawn with matplotlib's Agg backend (no display needed) and embedded in the HTML as
base64 PNG, so a report is one self-contained file.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first

STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2rem auto;
       max-width: 1100px; color: #222; line-height: 1.4; }
h1 { font-size: 1.6rem; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2rem;
       margin-top: 2rem; font-size: 1.25rem; }
table { border-collapse: collapse; margin: .5rem 0; font-size: .85rem; }
th, td { border: 1px solid #ddd; padding: .25rem .5rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.alert { color: #a40000; font-weight: 600; } .warn { color: #8a5a00; font-weight: 600; }
.ok { color: #1b6e1b; } .note { color: #666; font-size: .85rem; }
figure { margin: .5rem 0 1rem; } img { max-width: 100%; }
"""


def figure(width: float = 7.0, height: float = 3.6):
    """Return a new matplotlib figure and axes of the report's usual size (inches)."""
    fig, axes = plt.subplots(figsize=(width, height), dpi=100)
    return fig, axes


def image_tag(fig, alt: str, tight: bool = True, dpi: float | None = None) -> str:
    """Render ``fig`` as an embedded PNG ``<img>`` element and close the figure.

    ``tight=False`` skips matplotlib's tight layout, which costs more than the drawing of a
    small chart; such a figure sets its margins with ``subplots_adjust``.
    """
    buffer = io.BytesIO()
    if tight:
        fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return (f'<figure><img alt="{html.escape(alt)}" '
            f'src="data:image/png;base64,{encoded}"></figure>')


def format_value(value) -> str:
    """Format a table cell: floats with 4 significant digits, None as an empty cell."""
    if value is None:
        return ""
    if isinstance(value, float):
        if value != value:  # NaN
            return ""
        return f"{value:.4g}"
    return str(value)


def table(headers: Sequence[str], rows: Iterable[Sequence], classes: Sequence[str] | None = None
          ) -> str:
    """Render an HTML table; numbers are right-aligned, ``classes`` styles whole rows."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for index, row in enumerate(rows):
        cells = []
        for value in row:
            css = ' class="num"' if isinstance(value, int | float) and not isinstance(value, bool) \
                else ""
            cells.append(f"<td{css}>{html.escape(format_value(value))}</td>")
        row_class = f' class="{classes[index]}"' if classes and classes[index] else ""
        body.append(f"<tr{row_class}>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def page(title: str, sections: Iterable[str]) -> str:
    """Return a complete HTML document with the shared style."""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
            f"<body><h1>{html.escape(title)}</h1>{''.join(sections)}</body></html>\n")
