"""The page of a report: sections with anchors, a table of contents, tables, embedded figures.

Figures are saved as PNG files beside the page and embedded as base64, so ``report.html`` is
readable offline with no other file and nothing to fetch.
"""

from __future__ import annotations

import base64
import html
import io
import os
import re
from pathlib import Path
from typing import Any

from .figure_style import pyplot

__all__ = ["CSS", "Page", "table"]

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto;
       max-width: 1100px; padding: 1.5em 2em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 1.8em; border-bottom: 1px solid
#ddd; padding-bottom: 0.2em; font-size: 1.25em; } h3 { font-size: 1.05em; margin-top: 1.3em; }
p.note { color: #555; margin-top: 0.2em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
th, td { padding: 0.25em 0.7em; border-bottom: 1px solid #e4e4e4; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
td.text { text-align: left; } code { font-size: 0.95em; }
figure { margin: 0.8em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
div.row { display: flex; flex-wrap: wrap; gap: 1.5em; } div.row > div { flex: 1 1 420px; }
th.text { text-align: left; }
nav.toc { background: #f8f8f8; border: 1px solid #e4e4e4; padding: 0.4em 1.2em; margin: 1em 0; }
nav.toc ul { margin: 0.2em 0; padding-left: 1.2em; } nav.toc li { margin: 0.1em 0; }
span.swatch { display: inline-block; width: 0.8em; height: 0.8em; margin-right: 0.3em;
              border-radius: 2px; vertical-align: -0.05em; }
"""


def table(headers: list[str], rows: list[list[Any]], text_cols: tuple[int, ...] = ()) -> str:
    """An HTML table; cells are escaped; ``text_cols`` are left-aligned."""
    head = "".join(
        f"<th{' class=text' if i in text_cols else ''}>{html.escape(str(h))}</th>"
        for i, h in enumerate(headers)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f"<td{' class=text' if i in text_cols else ''}>{html.escape(str(c))}</td>"
            for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _anchor(title: str, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "section"
    anchor, i = base, 2
    while anchor in taken:
        anchor, i = f"{base}-{i}", i + 1
    taken.add(anchor)
    return anchor


class Page:
    """Collects HTML, headings (for the table of contents) and figures of one report."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.parts: list[str] = []
        self.toc: list[tuple[int, str, str]] = []
        self._anchors: set[str] = set()
        self._names: set[str] = set()
        self.files: dict[str, bytes] = {}  # figure files, written by :meth:`save`

    def add(self, text: str) -> None:
        self.parts.append(text)

    def section(self, title: str, level: int = 2) -> str:
        """Add a heading with an anchor listed in the table of contents; return the anchor."""
        anchor = _anchor(title, self._anchors)
        self.toc.append((level, title, anchor))
        self.add(f'<h{level} id="{anchor}">{html.escape(title)}</h{level}>')
        return anchor

    def figure(self, fig: Any, name: str, caption: str, lead: str = "") -> None:
        """Embed ``fig`` with its caption; :meth:`save` writes it as ``name.png`` beside the page.

        ``lead`` is HTML put before the (escaped) caption, e.g. a colour swatch.
        """
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
        while name in self._names:
            name += "_"
        self._names.add(name)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        pyplot().close(fig)
        data = buf.getvalue()
        self.files[f"{name}.png"] = data
        b64 = base64.b64encode(data).decode("ascii")
        self.add(
            f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{b64}">'
            f"<figcaption>{lead}{html.escape(caption)}</figcaption></figure>"
        )

    def save(self, name: str, title: str, header: str) -> Path:
        """Write the figure files, then the page as ``name`` (under a temporary name, renamed
        into place), so that a report that fails while being built changes no file."""
        for file, data in self.files.items():
            (self.out_dir / file).write_bytes(data)
        path = self.out_dir / name
        tmp = path.with_name(f".{name}.tmp-{os.getpid()}")
        try:
            tmp.write_text(self.render(title, header), encoding="utf-8")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    def render(self, title: str, header: str) -> str:
        """The whole document: title, ``header`` HTML, table of contents, then the sections."""
        items, depth = [], 2
        for level, text, anchor in self.toc:
            while depth < level:
                items.append("<ul>")
                depth += 1
            while depth > level:
                items.append("</ul>")
                depth -= 1
            items.append(f'<li><a href="#{anchor}">{html.escape(text)}</a></li>')
        items.extend(["</ul>"] * (depth - 2))
        toc = '<nav class=toc><strong>Contents</strong><ul>' + "".join(items) + "</ul></nav>"
        return (
            "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{html.escape(title)}</h1>{header}{toc}"
            + "\n".join(self.parts)
            + "</body></html>"
        )
