"""The report toolkit: one page template, tables, figures and shared plots for every HTML report.

Training (``training/report.py``), calibration and evaluation (``calibration/report.py``) and the demo
(``app/demo/report.py``) build their pages from :mod:`inspector.reporting.page` and draw plots used by more
than one of them with :mod:`inspector.reporting.plots`. Jinja2 and matplotlib are imported only when a page
is rendered or a plot drawn, so the station never loads them.
"""

from inspector.reporting.page import (
    Section,
    figure,
    keyed_records_table,
    links,
    mapping_table,
    number,
    paragraph,
    percent,
    preformatted,
    rate,
    records_table,
    render_page,
    table,
    verdict_banner,
    write_page,
)

__all__ = [
    "Section",
    "figure",
    "keyed_records_table",
    "links",
    "mapping_table",
    "number",
    "paragraph",
    "percent",
    "preformatted",
    "rate",
    "records_table",
    "render_page",
    "table",
    "verdict_banner",
    "write_page",
]
