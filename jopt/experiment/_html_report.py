"""One self-contained HTML report: tables and PNG plots embedded (``jopt compare --html``).

The file needs nothing beside it (no scripts, no stylesheets, no network): plots are inlined as
``<img src="data:image/png;base64,...">`` and the style sheet is a ``<style>`` block, so it can
be mailed, attached to an issue or opened offline. Tables come as the markdown pipe tables the
command already prints (``markdown_table``), so the report shows the same cells as
``compare.md``.
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Sequence

from jopt.core.errors import JoptError
from jopt.experiment._artifacts import atomic_write

__all__ = ["markdown_to_html_table", "write_html_report"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.6em; text-align: right; }
th { background: #eee; } td:first-child, th:first-child { text-align: left; }
figure { display: inline-block; vertical-align: top; margin: 0.5em; }
img { max-width: 520px; border: 1px solid #ddd; }
figcaption { font-size: 0.85em; color: #555; text-align: center; }
p.note { color: #555; font-size: 0.9em; }
"""


def markdown_to_html_table(md: str) -> str:
    """A markdown pipe table (header, ``|---|`` rule, rows) as an escaped HTML ``<table>``."""
    lines = [ln.strip() for ln in md.strip().splitlines() if ln.strip()]
    if len(lines) < 2 or not set(lines[1]) <= set("|-: "):
        raise JoptError("not a markdown table (a header line and a |---| rule are needed)")

    def cells(line: str) -> list[str]:
        return [html.escape(c.strip()) for c in line.strip("|").split("|")]

    head = "".join(f"<th>{c}</th>" for c in cells(lines[0]))
    body = "".join(
        "<tr>" + "".join(f"<td>{c}</td>" for c in cells(ln)) + "</tr>\n" for ln in lines[2:]
    )
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>"


def _img(path: str) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise JoptError(f"cannot embed plot {path}: {e.strerror or e}") from None
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise JoptError(f"cannot embed plot {path}: not a PNG file")
    b64 = base64.b64encode(data).decode("ascii")
    name = html.escape(os.path.basename(path))
    return (
        f'<figure><img alt="{name}" src="data:image/png;base64,{b64}">'
        f"<figcaption>{name}</figcaption></figure>"
    )


def write_html_report(
    path: str,
    *,
    title: str,
    tables: Sequence[tuple[str, str]] = (),
    images: Sequence[str] = (),
    notes: Sequence[str] = (),
) -> str:
    """Write one self-contained HTML file and return its path.

    ``tables``: ``(heading, markdown pipe table)`` pairs; ``images``: PNG files, embedded as
    base64 data URIs in the given order; ``notes``: short paragraphs under the title (plain
    text, escaped). Written atomically.
    """
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    parts += [f'<p class="note">{html.escape(n)}</p>' for n in notes]
    for heading, md in tables:
        parts += [f"<h2>{html.escape(heading)}</h2>", markdown_to_html_table(md)]
    if images:
        parts.append("<h2>Plots</h2>")
        parts += [_img(p) for p in images]
    parts.append("</body></html>\n")
    atomic_write(path, "\n".join(parts))
    return path
