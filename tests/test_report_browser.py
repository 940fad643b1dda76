"""The report as a person sees it: opened over file:// in headless Chromium (Debian's package, driven by Playwright),
every image decodes, the console shows no error, nothing fails to load, and a screenshot is taken.

Needs /usr/bin/chromium (`apt-get install -y chromium`; .ci/run installs it) and the playwright package."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from _report_helpers import make_run_store
from report import ReportConfig, build_report
from report.browser import browser_unavailable_reason, open_report

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(browser_unavailable_reason() is not None,
                                 reason=f"no browser for the report test: {browser_unavailable_reason()}")]


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser")
    gallery = tmp / "gallery.png"
    Image.new("RGB", (160, 64), "teal").save(gallery)
    rows = [dict(direction="interfacegan-smiling", method="interfacegan", target="smiling", strength=s,
                 flip_rate=0.5 + s / 10, interference=0.02, interference_max=0.05, pixel_change=0.03 * s)
            for s in (1.5, 3.0)]
    (tmp / "rows.json").write_text(json.dumps(rows))
    build_report(make_run_store(tmp, "a", noise=6.0), tmp / "reports", ReportConfig(run="night1", fid=False))
    last = build_report(make_run_store(tmp, "b", noise=12.0, fail_every=6), tmp / "reports", ReportConfig(
        run="night2", fid=False, edit_rows=tmp / "rows.json", galleries=[("smiling", gallery)]))
    return dict(tmp=tmp, last=last)


def test_report_page_renders_every_image_without_console_errors(reports):
    shot = reports["tmp"] / "report.png"
    page = open_report(reports["last"].path, screenshot=shot)
    assert page.title.startswith("ganinv report night2")
    expected = {"histograms.png", "by_label_psnr.png", "trends.png", "grid_sample.png", "grid_worst.png"}
    assert expected <= set(page.images) and any(src.startswith("galleries/") for src in page.images)
    assert page.broken_images == []
    assert page.console_errors == []
    assert page.failed_requests == []
    with Image.open(shot) as image:
        assert image.width == 1280 and image.height > 2000  # the full page, not just the first screen


def test_reports_index_page_opens_cleanly_and_links_every_run(reports):
    page = open_report(reports["last"].path.parents[1] / "index.html")
    assert page.title == "ganinv evaluation reports"
    assert page.console_errors == [] and page.failed_requests == [] and page.broken_images == []


def test_a_broken_image_would_be_caught(reports):
    """The check itself: a page whose picture is missing is reported as broken, with a console error."""
    folder = reports["tmp"] / "copy"
    html = reports["last"].path.read_text().replace('src="histograms.png"', 'src="missing.png"')
    folder.mkdir()
    (folder / "index.html").write_text(html)
    page = open_report(folder / "index.html")
    assert "missing.png" in page.broken_images
    assert any("ERR_FILE_NOT_FOUND" in e for e in page.console_errors + page.failed_requests)
