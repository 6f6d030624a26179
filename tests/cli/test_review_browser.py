"""The review page in headless Chromium: confirm one label and fix another by keyboard, export the CSV.

Needs Debian's chromium and Playwright (`pip install playwright==1.65.2`; no `playwright install`: the
system browser is used). Skips cleanly without either. CI install lines:

    apt-get update && apt-get install -y --no-install-recommends chromium chromium-driver
    pip install playwright==1.65.2
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

CHROMIUM = os.environ.get("ZSCLIP_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium chromium-driver)")


def test_confirm_fix_and_export_by_keyboard(tiny_model_dir, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install playwright)")
    from test_label import make_folder
    from zsclip.cli import label_main
    from zsclip.review import review_items

    root = make_folder(tmp_path)
    result = CliRunner().invoke(label_main, [str(root / "img"), "--classes", str(root / "classes.json"), "--out",
                                             str(tmp_path / "labels.csv"), "--model", str(tiny_model_dir),
                                             "--review", str(tmp_path / "review")])
    assert result.exit_code == 0, result.output
    index = tmp_path / "review" / "index.html"
    first, second = review_items(index)[:2]

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = browser.new_page(accept_downloads=True)
            errors: list = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(index.as_uri())
            assert page.locator(".card").count() == 12
            assert page.locator(".card.current .file").inner_text() == first["file"]
            page.keyboard.press("y")  # confirm the first (a problem image: problems come first)
            assert page.locator(".card.current .file").inner_text() == second["file"]
            page.keyboard.press("f")
            assert page.locator("#fix-input").is_visible()
            page.keyboard.type("син")  # unique prefix of «синий» = class 2
            page.keyboard.press("Enter")
            assert "fixed → 2" in page.locator(".card.fixed .status").inner_text()
            with page.expect_download() as download_info:
                page.keyboard.press("e")
            download = download_info.value
            assert download.suggested_filename == "corrections.csv"
            text = Path(download.path()).read_text(encoding="utf-8")
            assert page.locator("#export-csv").input_value() == text
            page.reload()  # decisions survive a reload (localStorage)
            assert "2 reviewed" in page.locator("#summary").inner_text()
            assert not errors, errors
        finally:
            browser.close()

    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows == [
        {"file": first["file"], "predicted": str(first["label"]), "label": str(first["label"]),
         "class_name": ["красный", "зелёный", "синий"][first["label"]], "status": "confirmed"},
        {"file": second["file"], "predicted": str(second["label"]), "label": "2", "class_name": "синий",
         "status": "fixed"},
    ]
