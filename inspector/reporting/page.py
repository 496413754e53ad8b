"""HTML pages for every report: one Jinja2 template, tables and figures, numbers and rates written one way.

A page is a title, the deployability verdict at the top, intro blocks and sections. Each block is either
plain text (escaped, shown as a paragraph) or a fragment built here (:func:`table`, :func:`figure`, ...),
which is :class:`markupsafe.Markup` and goes in as it is. Conventions, so every report reads the same:

* a share of parts (escape, false reject, review, accuracy, agreement) is a percentage with two decimals,
  with its count when known: ``2.50% (1 of 40)`` -- :func:`percent`, :func:`rate`;
* any other number (AUC, F1, threshold, seconds, bytes) goes through :func:`number`;
* a mapping or a list of records is a table (:func:`mapping_table`, :func:`records_table`), never a
  printed ``dict``.

Jinja2 is imported when a page is rendered, so the station, which installs neither it nor matplotlib,
can import the core without it.
"""

from __future__ import annotations

import base64
import math
import numbers
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, List, Mapping, Optional, Sequence, Union

from markupsafe import Markup, escape

from inspector.fsutil import PathLike, atomic_write_text

if TYPE_CHECKING:
    import jinja2

    from inspector.deployability import DeployabilityVerdict

Block = Union[str, Markup]
MISSING = "–"


@dataclass
class Section:
    """An ``<h2>`` heading and its blocks (plain text becomes an escaped paragraph)."""

    heading: str
    parts: List[Block] = field(default_factory=list)

    def add(self, *parts: Block) -> Section:
        self.parts.extend(parts)
        return self


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("inspector.reporting", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def _block(part: Block) -> Markup:
    return part if isinstance(part, Markup) else paragraph(part)


def render_page(
    title: str,
    *,
    verdict: Optional[DeployabilityVerdict] = None,
    intro: Iterable[Block] = (),
    sections: Iterable[Section] = (),
) -> str:
    """The whole HTML page; the verdict, when given, is the first thing under the title."""
    shown = [Section(s.heading, [_block(p) for p in s.parts]) for s in sections]
    return (
        _environment()
        .get_template("base.html.j2")
        .render(title=title, verdict=verdict, intro=[_block(p) for p in intro], sections=shown)
    )


def write_page(
    path: PathLike,
    title: str,
    *,
    verdict: Optional[DeployabilityVerdict] = None,
    intro: Iterable[Block] = (),
    sections: Iterable[Section] = (),
) -> Path:
    """:func:`render_page` written atomically to ``path``; returns the path."""
    return atomic_write_text(path, render_page(title, verdict=verdict, intro=intro, sections=sections))


def verdict_banner(verdict: DeployabilityVerdict) -> Markup:
    """The verdict block alone, as the page template shows it."""
    return Markup(_environment().get_template("verdict.html.j2").render(verdict=verdict))


def number(value: Any) -> str:
    """One way to write a number: integers as they are, floats with four significant digits."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        value = float(value)
        if math.isnan(value):
            return "n/a"
        return f"{value:,.0f}" if abs(value) >= 1e4 else f"{value:.4g}"
    return str(value)


def percent(fraction: Optional[float]) -> str:
    """A share (0..1) as a percentage with two decimals."""
    if fraction is None or (isinstance(fraction, float) and math.isnan(fraction)):
        return MISSING
    return f"{100 * fraction:.2f}%"


def rate(
    count: int, total: int, low: Optional[float] = None, high: Optional[float] = None, confidence: float = 0.95
) -> str:
    """``count`` of ``total`` as a percentage, with its confidence interval when ``low``/``high`` are given."""
    if not total:
        return f"{MISSING} (0 of 0)"
    interval = (
        "" if low is None or high is None else (f"; {100 * confidence:.0f}% CI {100 * low:.2f}–{100 * high:.2f}%")
    )
    return f"{percent(count / total)} ({count} of {total}{interval})"


def cell(value: Any) -> Markup:
    """A table cell's content: fragments as they are, numbers by :func:`number`, a mapping or a list of
    mappings as a nested table (never a printed ``dict``), the rest escaped."""
    if isinstance(value, Markup):
        return value
    if isinstance(value, Mapping):
        return mapping_table(value)
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, Mapping) for v in value):
            return records_table(value)
        return escape(", ".join(number(v) for v in value) or MISSING)
    return escape(number(value))


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], row_classes: Optional[Sequence[str]] = None) -> Markup:
    """An HTML table; ``row_classes`` (one per row, "" for none) marks rows, e.g. ``bad``."""
    head = Markup("").join(Markup("<th>{}</th>").format(h) for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = row_classes[i] if row_classes else ""
        opening = Markup("<tr class='{}'>").format(cls) if cls else Markup("<tr>")
        body.append(opening + Markup("").join(Markup("<td>{}</td>").format(cell(v)) for v in row) + Markup("</tr>"))
    return Markup("<table><tr>{}</tr>{}</table>").format(head, Markup("").join(body))


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> List[List[Any]]:
    rows: List[List[Any]] = []
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            rows += _flatten(value, f"{name}.") if value else [[name, MISSING]]
        else:
            rows.append([name, value])
    return rows


def mapping_table(mapping: Mapping[str, Any], headers: Sequence[str] = ("field", "value")) -> Markup:
    """A two-column table of a mapping; nested mappings become dotted keys (``timings.train``)."""
    return table(headers, _flatten(mapping))


def records_table(records: Sequence[Mapping[str, Any]], columns: Optional[Sequence[str]] = None) -> Markup:
    """A list of dicts as a table, one row per record; ``columns`` defaults to the keys in first-seen order."""
    if columns is None:
        columns = list(dict.fromkeys(k for r in records for k in r))
    return table(columns, [[r.get(c) for c in columns] for r in records])


def keyed_records_table(
    records: Mapping[str, Mapping[str, Any]], key_header: str, columns: Optional[Sequence[str]] = None
) -> Markup:
    """``{name: {column: value}}`` as a table: one row per name."""
    if columns is None:
        columns = list(dict.fromkeys(k for r in records.values() for k in r))
    return table([key_header, *columns], [[name, *(r.get(c) for c in columns)] for name, r in records.items()])


def paragraph(text: str, cls: str = "") -> Markup:
    """Escaped text in a ``<p>``; ``cls`` "fail" or "ok" colours it."""
    if cls:
        return Markup("<p class='{}'>{}</p>").format(cls, text)
    return Markup("<p>{}</p>").format(text)


def preformatted(text: str) -> Markup:
    return Markup("<pre>{}</pre>").format(text)


def links(named: Mapping[str, str]) -> Markup:
    """``{text: href}`` as one line of links."""
    return Markup("<p>{}</p>").format(
        Markup(" &middot; ").join(Markup("<a href='{}'>{}</a>").format(href, text) for text, href in named.items())
    )


def figure(
    src: PathLike,
    caption: str = "",
    *,
    alt: str = "",
    width: Optional[int] = None,
    embed: bool = False,
    thumb: bool = False,
) -> Markup:
    """An image with its caption. ``src`` is written as given (a path relative to the page), or with
    ``embed`` the PNG file is read and put into the page (base64), so the page stands alone."""
    url = "data:image/png;base64," + base64.b64encode(Path(src).read_bytes()).decode() if embed else str(src)
    size = Markup(" width='{}'").format(width) if width else Markup("")
    img = Markup('<img src="{}" alt="{}"{}>').format(url, alt or caption or Path(src).stem, size)
    caption_html = Markup("<figcaption>{}</figcaption>").format(caption) if caption else Markup("")
    return Markup("<figure{}>{}{}</figure>").format(
        Markup(" class='thumb'") if thumb else Markup(""), img, caption_html
    )
