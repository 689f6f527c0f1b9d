"""A real browser (headless Chromium) watches a running ``blazefl run``.

`blazefl serve` serves the dashboard over a folder while a ``blazefl run``
trains into it one round at a time (tests/dashboard/stepped_cli.py): the
accuracy chart gains a point per round, a client that fails is marked, and a
reload replays the history. The screenshot is checked and kept in the test's
folder; with ``BLAZEFL_SCREENSHOT=docs/dashboard.png`` it also replaces the
docs' one (``BLAZEFL_SCREENSHOT=docs/dashboard.png scripts/test.sh -m slow -k
browser``).
Skipped where Chromium, its driver or selenium are missing (``.ci/run``
installs them: scripts/provision-browser.sh).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

selenium = pytest.importorskip("selenium")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None or DRIVER is None,
        reason="needs Debian's chromium and chromium-driver "
        "(scripts/provision-browser.sh)",
    ),
]
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SCREENSHOT = os.environ.get("BLAZEFL_SCREENSHOT")


def _env() -> dict[str, str]:
    path = os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")])
    return {
        **os.environ,
        "PYTHONPATH": path + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--window-size=1280,1500",
        "--disable-dev-shm-usage",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _points(driver: webdriver.Chrome) -> int:
    return int(
        driver.find_element(By.ID, "acc-chart").get_attribute("data-points") or 0
    )


def _wait(driver: webdriver.Chrome, predicate, what: str) -> None:  # type: ignore[no-untyped-def]
    WebDriverWait(driver, 90, poll_frequency=0.2).until(
        lambda d: predicate(d), message=f"the dashboard never showed {what}"
    )


def test_a_browser_follows_a_running_run(
    tmp_path: Path, browser: webdriver.Chrome
) -> None:
    runs, go = tmp_path / "runs", tmp_path / "go"
    runs.mkdir()
    serve = subprocess.Popen(
        [sys.executable, "-m", "blazefl.cli", "serve", str(runs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    run = None
    try:
        assert serve.stdout is not None
        line = serve.stdout.readline()
        assert line.startswith("dashboard: http://127.0.0.1:"), line
        url = line.split(": ", 1)[1].strip()
        run = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "stepped_cli.py"),
                str(go),
                "2",
                "3",
                "run",
                "--out",
                str(runs / "fedavg"),
                "--rounds",
                "4",
                "--clients",
                "6",
                "--sample-ratio",
                "1",
                "--epochs",
                "1",
                "--executor",
                "threads",
                "-q",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        browser.get(url)
        _wait(browser, lambda d: _points(d) == 1, "round 1 on the accuracy chart")
        go.write_text("1")
        _wait(browser, lambda d: _points(d) == 2, "a second point after round 2")
        go.write_text("2")  # round 3: client 3 raises, the round fails
        _wait(
            browser,
            lambda d: d.find_elements(
                By.CSS_SELECTOR, "#clients .client.failed[data-cid='3']"
            ),
            "client 3 marked as failed",
        )
        assert run.wait(timeout=120) == 1  # the failed round stopped the run
        browser.refresh()  # history replayed from the start
        _wait(browser, lambda d: _points(d) == 2, "the replayed history after a reload")
        _wait(
            browser,
            lambda d: d.find_elements(By.CSS_SELECTOR, "#clients .client.failed"),
            "the failed client after a reload",
        )
        timeline = browser.find_element(By.ID, "timeline").text
        assert "aborted" in timeline
        png = browser.get_screenshot_as_png()
    finally:
        for proc in (run, serve):
            if proc is not None:
                if proc.poll() is None:
                    proc.terminate()
                proc.communicate(timeout=30)  # and close its pipes
    from PIL import Image, ImageStat

    image = Image.open(io.BytesIO(png)).convert("L")
    spread = ImageStat.Stat(image).stddev[0]
    assert spread > 10, f"the screenshot looks blank (pixel std {spread:.1f})"
    (tmp_path / "dashboard.png").write_bytes(png)
    if SCREENSHOT:
        Path(SCREENSHOT).write_bytes(png)
    assert serve.returncode == 0 or serve.returncode == -15
