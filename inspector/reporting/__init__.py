"""The report toolkit: one page template, tables, figures and shared plots for every HTML report.

Training (``training/report.py``), calibration and evaluation (``calibration/report.py``) and the demo
(``app/demo/report.py``) build their pages from :mod:`inspector.reporting.page`, draw plots used by more
than one of them with :mod:`inspector.reporting.plots` and show the images a person must look at
(escapes, false rejects, mistakes: cropped to what the model saw, named by file) with
:mod:`inspector.reporting.gallery`. Jinja2 and matplotlib are imported only when a page is rendered or a
plot drawn, so the station never loads them.
"""

from inspector.reporting.gallery import (
    Mistakes,
    Tile,
    heatmap_overlay,
    image_grid,
    mistake_grids,
    pass_fail_mistakes,
    render_heatmap,
)
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
    "Mistakes",
    "Section",
    "Tile",
    "figure",
    "heatmap_overlay",
    "image_grid",
    "keyed_records_table",
    "links",
    "mistake_grids",
    "mapping_table",
    "number",
    "paragraph",
    "pass_fail_mistakes",
    "percent",
    "preformatted",
    "rate",
    "records_table",
    "render_heatmap",
    "render_page",
    "table",
    "verdict_banner",
    "write_page",
]
