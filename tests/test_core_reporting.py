"""inspector.reporting: the page every report is built from, its tables and numbers, and the shared plots."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tomllib
from markupsafe import Markup

from inspector import reporting
from inspector.decision import DecisionPolicy
from inspector.deployability import assess
from inspector.reporting import Section, plots

ROOT = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"


def test_page_has_the_verdict_first_and_escapes_text():
    verdict = assess(np.full(100, 0.2), np.arange(100) < 40, DecisionPolicy(threshold=0.5), basis="test <split>")
    page = reporting.render_page(
        "Report <1>",
        verdict=verdict,
        intro=["a & b"],
        sections=[Section("First", [reporting.paragraph("x < y", "fail")]), Section("Second", ["plain"])],
    )
    assert "<title>Report &lt;1&gt;</title>" in page
    body = page[page.index("<body>") :]
    assert (
        body.index("NOT DEPLOYABLE")
        < body.index("a &amp; b")
        < body.index("<h2>First</h2>")
        < body.index("<h2>Second</h2>")
    )
    assert "(test &lt;split&gt;)" in body and "<p class='fail'>x &lt; y</p>" in body and "<p>plain</p>" in body
    assert str(reporting.verdict_banner(verdict)) in page


def test_numbers_and_rates_are_written_one_way():
    assert [
        reporting.number(v) for v in (3, np.int64(4), 0.123456, np.float32(0.5), None, float("nan"), 123456.7, True)
    ] == ["3", "4", "0.1235", "0.5", "–", "n/a", "123,457", "yes"]
    assert reporting.percent(0.025) == "2.50%" and reporting.percent(None) == "–"
    assert reporting.rate(1, 40) == "2.50% (1 of 40)"
    assert reporting.rate(0, 0) == "– (0 of 0)"
    assert reporting.rate(1, 40, 0.0006, 0.1316) == "2.50% (1 of 40; 95% CI 0.06–13.16%)"


def test_tables_never_print_a_dict():
    html = str(
        reporting.mapping_table(
            {
                "timings": {"data_s": 1.3, "train_s": 20},
                "events": ["a", "b"],
                "reasons": [{"problem": "chance_auc", "message": "<AUC>"}],
                "empty": {},
            }
        )
    )
    assert "{" not in html and "'" not in html.replace("<tr class='", "")
    assert "<td>timings.data_s</td><td>1.3</td>" in html and "<td>events</td><td>a, b</td>" in html
    assert "<th>problem</th><th>message</th>" in html and "<td>&lt;AUC&gt;</td>" in html
    marked = str(reporting.table(["a"], [[Markup("<b>x</b>")], ["<b>"]], ["bad", ""]))
    assert "<tr class='bad'><td><b>x</b></td></tr><tr><td>&lt;b&gt;</td></tr>" in marked
    keyed = str(reporting.keyed_records_table({"good": {"accept": 3, "reject": 1}}, "truth"))
    assert "<th>truth</th><th>accept</th><th>reject</th>" in keyed and "<td>good</td><td>3</td><td>1</td>" in keyed


def test_figure_links_or_embeds(tmp_path):
    png = tmp_path / "p.png"
    png.write_bytes(PNG + b"rest")
    assert 'src="p.png"' in reporting.figure("p.png", "cap")
    embedded = reporting.figure(png, "cap", embed=True)
    assert 'src="data:image/png;base64,iVBORw0KGgpyZXN0"' in embedded and "<figcaption>cap</figcaption>" in embedded


def test_write_page_is_atomic_and_complete(tmp_path):
    path = reporting.write_page(tmp_path / "r" / "report.html", "T", sections=[Section("S", ["x"])])
    assert path.read_text().rstrip().endswith("</html>") and [p.name for p in path.parent.iterdir()] == ["report.html"]


def test_templates_ship_as_package_data():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "inspector.reporting"
    ]
    templates = sorted((ROOT / "inspector" / "reporting" / "templates").iterdir())
    assert templates
    for path in templates:
        assert any(path.relative_to(ROOT / "inspector" / "reporting").match(p) for p in patterns), path.name


def test_importing_the_toolkit_loads_neither_matplotlib_nor_jinja2():
    code = (
        "import sys, inspector.reporting, inspector.reporting.plots\n"
        "assert not [m for m in sys.modules if m.startswith(('matplotlib', 'jinja2'))]\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture
def scored():
    rng = np.random.default_rng(0)
    is_defect = np.arange(200) < 80
    return np.clip(rng.normal(0.3 + 0.4 * is_defect, 0.15), 0, 1), is_defect


def _outside(ax):
    """The legend's box does not overlap the axes' data area."""
    renderer = ax.figure.canvas.get_renderer()
    legend, area = ax.get_legend().get_window_extent(renderer), ax.get_window_extent(renderer)
    return not legend.overlaps(area)


def test_roc_marks_the_operating_point_and_keeps_the_legend_outside(scored, tmp_path):
    scores, is_defect = scored
    fig, (ax, empty) = plots.new_figure(2)
    plots.roc(ax, [("model", scores, is_defect)], 0.5)
    plots.roc(empty, [("only defects", scores[is_defect], is_defect[is_defect])], 0.5)
    point = [line for line in ax.lines if line.get_marker() == "o"][0]
    fails = scores >= 0.5
    assert point.get_xdata()[0] == pytest.approx((fails & ~is_defect).sum() / 120)
    assert point.get_ydata()[0] == pytest.approx((fails & is_defect).sum() / 80)
    assert re.search(r"model \(AUC 0\.9\d{3}\)", ax.get_legend().get_texts()[0].get_text())
    assert "needs good and defect images" in [t.get_text() for t in empty.texts]
    plots.save(fig, tmp_path / "roc.png")
    assert _outside(ax)
    assert (tmp_path / "roc.png").read_bytes()[:8] == PNG


def test_histogram_and_confusion(scored, tmp_path):
    scores, is_defect = scored
    fig, (hist, cm) = plots.new_figure(2)
    plots.score_histogram(
        hist, scores, is_defect, DecisionPolicy(threshold=0.5, review_low=0.4, review_high=0.6), "scores"
    )
    plots.confusion(cm, np.array([[5, 2], [1, 7]]), ["good", "dent"])
    counts = [sum(p.get_height() for p in container) for container in hist.containers]
    assert counts == [120, 80]
    labels = [t.get_text() for t in hist.get_legend().get_texts()]
    assert labels == ["good (120)", "defect (80)", "threshold 0.500", "review band"]
    assert sorted(t.get_text() for t in cm.texts) == ["1", "2", "5", "7"]
    plots.save(fig, tmp_path / "h.png")
    assert _outside(hist)


def _decoded(html: str) -> list:
    import base64

    import cv2

    data = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    return [cv2.imdecode(np.frombuffer(base64.b64decode(d), np.uint8), cv2.IMREAD_UNCHANGED) for d in data]


def test_image_grid_embeds_each_crop_with_its_name_and_overlay():
    crop = np.zeros((6, 4, 3), np.uint8)
    crop[:, :, 0] = 200  # red in RGB
    tiles = [
        reporting.Tile(crop, "crack/<a>.png", ("crack → good",)),
        reporting.Tile(crop[:, :, 0], "b.png", overlay=np.full((6, 4, 3), 9, np.uint8)),
    ]
    html = str(reporting.image_grid(tiles, height=60))
    first, gray, overlay = _decoded(html)
    assert first.shape == (6, 4, 3) and (first[:, :, 2] == 200).all() and (first[:, :, :2] == 0).all()  # BGR
    assert gray.shape == (6, 4) and (overlay == 9).all()
    assert "<code class='name'>crack/&lt;a&gt;.png</code><br>crack → good" in html
    assert html.count('width="40" height="60"') == 3 and 'alt="b.png heatmap"' in html
    assert str(reporting.image_grid([], empty="nothing here")) == "<p class='grid-empty'>nothing here</p>"


def test_mistakes_are_escapes_and_false_rejects_worst_first():
    scores = np.array([0.1, 0.9, 0.3, 0.55, 0.05, 0.7, 0.95])
    is_defect = np.array([True, False, True, True, False, False, True])
    band = DecisionPolicy(threshold=0.5, review_low=0.4, review_high=0.6)
    mistakes = reporting.pass_fail_mistakes(scores, is_defect, band)
    # 0.55 (a defect) is in the review band: not an escape; 0.05 and 0.95 are right
    assert (mistakes.escapes, mistakes.false_rejects, mistakes.defects, mistakes.goods) == ([0, 2], [1, 5], 4, 3)
    built = []

    def tile(i):
        built.append(i)
        return reporting.Tile(np.full((2, 2), i, np.uint8), f"img{i}.png")

    blocks = [str(b) for b in reporting.mistake_grids(mistakes, tile, limit=1, what="test split")]
    assert blocks[0] == (
        "<p class='fail'>Escapes (defects passed automatically), test split: 50.00% (2 of 4); the first 1 shown.</p>"
    )
    assert "img0.png" in blocks[1] and "img2.png" not in blocks[1]
    assert blocks[2].startswith("<p>False rejects (good parts failed), test split: 66.67% (2 of 3)")
    assert built == [0, 1]  # only the shown tiles are built (a report loads no more images than it shows)


def test_render_heatmap_over_a_model_input_and_over_a_frame_cut_to_its_roi():
    from inspector.preprocess import PreprocessSpec, Roi

    class_map = np.zeros((2, 2, 2), np.float32)  # cells_y x cells_x x (good, crack)
    class_map[1, 0, 1] = 4.0  # crack evidence in the bottom-left cell only
    model_input = np.full((64, 64, 3), 100, np.uint8)
    drawn = reporting.render_heatmap(model_input, class_map, ["good", "crack"], 0)
    assert drawn.shape == (256, 256, 3)  # drawn large enough that its text stays small next to the part
    red = drawn[..., 0].astype(int) - drawn[..., 2].astype(int)
    # The bottom-left cell sees around model-input (31.5, 63.5) (receptive_offset 15.5 for 64 pixels), drawn
    # at (126, 254): hot along the bottom edge left of the middle, not in its square's upper part, none elsewhere.
    assert red[220:250, 10:120].mean() > 50 and abs(red[10:100, 160:250].mean()) < 5
    assert red[130:150, 10:100].mean() < 0  # blue: the upper part of the cell's 32-pixel square
    frame = np.full((240, 320, 3), 100, np.uint8)
    spec = PreprocessSpec(width=64, height=64, roi=Roi(x=96, y=56, width=128, height=128))
    assert reporting.render_heatmap(frame, class_map, ["good", "crack"], 0, spec).shape == (128, 128, 3)
