"""The dashboard in a real browser (Debian's chromium, driven by Playwright):
samples published by a simulated board appear live, a command sent from
the page reaches the board and its answer comes back, and the page recovers
by itself when the cloud restarts."""

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from edgewire.mosquitto import PrivateMosquitto
from edgewire.procs import edgewire_argv, spawn, stop
from tests.helpers import Service, cloud_service, edge_service, run_edgewire

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip

pytestmark = pytest.mark.browser


@pytest.fixture
def board(tmp_path: Path, mosquitto: PrivateMosquitto, edge: Service) -> Iterator[None]:
    process = spawn(
        edgewire_argv("sim", "--broker", mosquitto.url, "--devices", "1", "--rate", "5",
                      "--prefix", "dash", "--data-dir", str(tmp_path / "boards")),
        tmp_path / "sim.log",
    )  # fmt: skip
    yield
    stop(process)


@pytest.fixture
def page() -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser.new_page(viewport={"width": 1200, "height": 900})
        browser.close()


def test_samples_appear_live_and_the_page_survives_a_cloud_restart(
    page: Page, cloud: Service, board: None
) -> None:
    page.goto(cloud.url + "/")
    expect(page.locator("#feed-state")).to_have_text("live", timeout=15_000)
    rows = page.locator('#samples tbody tr[data-device="dash-1"]')
    expect(rows.first).to_be_visible(timeout=15_000)
    chart = page.locator('.chart[data-series="dash-1/temp_c"]')
    expect(chart).to_be_visible()
    expect(chart.locator(".uplot canvas").first).to_be_visible(timeout=10_000)  # drawn by uPlot
    # A week, drawn from the cloud's per-bucket means.
    page.select_option("#range", "7d")
    expect(page.locator("#range")).to_have_attribute("data-loaded", "604800", timeout=10_000)
    expect(chart.locator(".uplot canvas").first).to_be_visible()
    expect(page.locator('#devices tr[data-device="dash-1"] td.status-online')).to_be_visible(
        timeout=15_000
    )
    # The fleet view names the board's edge and how its buffer stands.
    expect(page.locator('#devices tr[data-device="dash-1"] td.edge')).to_contain_text(
        "test-edge · ", timeout=20_000
    )

    # A command from the form reaches the board, and its state comes back.
    page.select_option("#cmd-device", "dash-1")
    page.select_option("#cmd-kind", "interval")
    page.fill("#cmd-value", "0.5")
    page.click("#command-form button")
    expect(page.locator("#cmd-result")).to_contain_text("queued c", timeout=10_000)
    expect(page.locator('#commands tr[data-state="acked"]')).to_have_count(1, timeout=20_000)
    page.select_option("#cmd-kind", "disable")
    page.fill("#cmd-value", "nosuch")
    page.click("#command-form button")
    refused = page.locator('#commands tr[data-state="failed"]')
    expect(refused).to_contain_text("no sensor nosuch", timeout=20_000)

    assert cloud.stop() == 0
    expect(page.locator("#feed-state")).to_have_text("reconnecting…", timeout=15_000)
    last_seq = int(rows.first.get_attribute("data-seq") or "-1")
    cloud.start()
    expect(page.locator("#feed-state")).to_have_text("live", timeout=20_000)
    # New samples keep arriving after the restart (the edge buffered meanwhile).
    expect(rows.first).not_to_have_attribute("data-seq", str(last_seq), timeout=20_000)
    assert int(rows.first.get_attribute("data-seq") or "-1") > last_seq

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000


def test_chromium_is_installed() -> None:
    version = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True, check=True)
    assert "Chromium" in version.stdout


def test_the_charting_library_is_served_by_the_cloud(cloud: Service) -> None:
    """No CDN: the page works on a Pi with no internet."""
    page_html = httpx.get(cloud.url + "/", timeout=10).text
    assert "://" not in page_html, "no remote assets"
    script = httpx.get(cloud.url + "/vendor/uPlot.iife.min.js", timeout=10)
    assert script.status_code == 200
    assert "uPlot" in script.text


def test_with_tokens_the_page_asks_for_one_then_shows_live_samples(
    tmp_path: Path, page: Page, mosquitto: PrivateMosquitto
) -> None:
    tokens_file = tmp_path / "tokens.json"
    added = run_edgewire(
        "cloud", "add-token", "wall", "--scope", "read", "--tokens-file", str(tokens_file)
    )
    assert added.returncode == 0, added.stderr
    cloud = cloud_service(tmp_path, extra=["--tokens-file", str(tokens_file)]).start()
    edge = edge_service(tmp_path, mosquitto.url, cloud.grpc_port).start()
    sim = spawn(
        edgewire_argv("sim", "--broker", mosquitto.url, "--devices", "1", "--rate", "5",
                      "--prefix", "dash", "--data-dir", str(tmp_path / "boards")),
        tmp_path / "sim.log",
    )  # fmt: skip
    try:
        page.goto(cloud.url + "/")
        expect(page.locator("#login")).to_be_visible(timeout=10_000)
        page.fill("#login-token", "wrong")
        page.click("#login button")
        expect(page.locator("#login-result")).to_have_text("unknown token", timeout=10_000)
        page.fill("#login-token", added.stdout.strip())
        page.click("#login button")
        expect(page.locator("#login")).to_be_hidden(timeout=10_000)
        expect(page.locator("#feed-state")).to_have_text("live", timeout=15_000)
        rows = page.locator('#samples tbody tr[data-device="dash-1"]')
        expect(rows.first).to_be_visible(timeout=20_000)
        # The cookie alone lets the page in on a reload.
        page.reload()
        expect(page.locator("#feed-state")).to_have_text("live", timeout=15_000)
        expect(page.locator("#login")).to_be_hidden()
        # Its token removed, the open feed ends and the page asks again.
        removed = run_edgewire("cloud", "remove-token", "wall", "--tokens-file", str(tokens_file))
        assert removed.returncode == 0, removed.stderr
        expect(page.locator("#login")).to_be_visible(timeout=15_000)
        expect(page.locator("#login-result")).to_have_text(
            "this token no longer works: log in again"
        )
        again = run_edgewire(
            "cloud", "add-token", "wall-2", "--scope", "read", "--tokens-file", str(tokens_file)
        )
        page.fill("#login-token", again.stdout.strip())
        page.click("#login button")
        expect(page.locator("#feed-state")).to_have_text("live", timeout=15_000)
        # The page carried on where it was, not started over (five ranges once).
        expect(page.locator("#range option")).to_have_count(5)
        expect(rows.first).to_be_visible(timeout=20_000)
    finally:
        stop(sim)
        assert edge.stop() == 0
        assert cloud.stop() == 0
