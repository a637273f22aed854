"""report.html in a real browser: Debian's chromium, headless, driven by Selenium.

Selenium is handed the driver and browser paths explicitly: its own driver download (Selenium
Manager) fails offline. CI installs chromium and chromium-driver (.ci/run); elsewhere the test is
skipped when they are absent, unless CCTVSR_REQUIRE_SHARED=1 says the environment must be complete.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Iterator

import pytest
from typer.testing import CliRunner

from cctvsr.cli import app
from cctvsr.output.report import AI_LABEL
from cctvsr.sr.weights import save_model_dir
from samples.make_demo_clip import make_demo_clip
from tests.conftest import tiny_weights

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
PAGE_LOAD_S = 30.0

runner = CliRunner()


def _unavailable(reason: str) -> None:
    if os.environ.get("CCTVSR_REQUIRE_SHARED") == "1":
        pytest.fail(f"CCTVSR_REQUIRE_SHARED=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if missing:
        _unavailable(f"{' and '.join(missing)} not installed (apt-get install chromium chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _unavailable("selenium is not installed (pip install -e '.[test]')")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(PAGE_LOAD_S)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def report_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """enhance on a 2 s demo clip with the tiny model: six tracks, each with its best face enhanced.

    --sr-max-face 0: the demo's faces are larger than the SR budget, and this test is about how
    the AI-enhanced view is shown.
    """
    root = tmp_path_factory.mktemp("report-browser")
    clip = make_demo_clip(root / "demo.mp4", seconds=2.0)
    weights = tiny_weights()
    model = save_model_dir(root / "tiny-model", weights.config, weights.state_dict)
    out = root / "out"
    result = runner.invoke(app, ["enhance", str(clip), "--out", str(out), "--model", str(model), "--every", "2", "--best", "1", "--sr-max-face", "0"])
    assert result.exit_code == 0, result.stderr
    (folder,) = out.iterdir()
    return folder


def test_report_opens_in_chromium_with_every_image_loaded_one_section_per_track_and_the_ai_label_shown(
    browser: object, report_folder: Path
) -> None:
    from selenium.webdriver.common.by import By

    tracks = json.loads((report_folder / "tracks.json").read_text(encoding="utf-8"))["tracks"]
    assert len(tracks) >= 4  # most of the six people; the report is only as good a test as what it shows

    driver = browser
    driver.get((report_folder / "report.html").as_uri())
    deadline = time.monotonic() + PAGE_LOAD_S
    while driver.execute_script("return document.readyState") != "complete":
        assert time.monotonic() < deadline, "report.html did not finish loading"
        time.sleep(0.05)

    images = driver.execute_script(
        "return Array.from(document.images, i => [i.getAttribute('src'), i.complete, i.naturalWidth, i.naturalHeight])"
    )
    fused = {t["track_id"] for t in tracks if t.get("fusion", {}).get("fused")}
    assert fused  # fusion is on by default: the fused and fused-SR columns are part of what is shown
    assert len(images) == 3 * len(tracks) + 2 * len(fused)  # LR, bicubic and SR per track; fused ×4 and fused SR
    broken = [src for src, complete, width, height in images if not (complete and width > 0 and height > 0)]
    assert broken == []

    links = driver.execute_script("return Array.from(document.querySelectorAll('[src], [href]'), e => e.src || e.href)")
    assert len(links) == len(images) and all(link.startswith(report_folder.as_uri() + "/") for link in links), links

    sections = driver.find_elements(By.TAG_NAME, "section")
    assert [s.get_attribute("id") for s in sections] == [f"track-{t['track_id']:04d}" for t in tracks]
    for section, track in zip(sections, tracks):
        labels = section.find_elements(By.CSS_SELECTOR, "figcaption.ai")
        assert len(labels) == 1 + (track["track_id"] in fused), section.get_attribute("id")  # SR, and fused SR
        for label in labels:
            assert label.is_displayed() and AI_LABEL in label.text and label.size["width"] > 0 and label.size["height"] > 0
    banner = driver.find_element(By.CSS_SELECTOR, "p.ai")
    assert banner.is_displayed() and "AI-enhanced" in banner.text
