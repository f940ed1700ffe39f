"""``cantor webui`` in a real browser: headless Chromium (the Debian ``chromium`` package, driven by
playwright) uploads a 30 s demo take, picks an experiment and a singer, clicks Convert and gets an
audio player whose wav is non-silent and exactly as long as the source, with the mel/F0 figure.
Every request the page makes must go to the UI on 127.0.0.1: anything else is aborted (the network
is cut) and fails the test.

The result page's screenshot goes to $CANTOR_WEBUI_SCREENSHOT when set (the README's
docs/webui.png was made so), else into the test's temporary folder."""
from __future__ import annotations

import base64
import io
import os
import shutil
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
import soundfile as sf

from tests.webui_fixtures import start

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

FETCH_BASE64 = """async (src) => {
    const bytes = new Uint8Array(await (await fetch(src)).arrayBuffer());
    let text = "";
    for (let i = 0; i < bytes.length; i += 32768) {
        text += String.fromCharCode(...bytes.subarray(i, i + 32768));
    }
    return btoa(text);
}"""


@pytest.fixture(scope="module")
def running(tmp_path_factory, demo_data):
    ui = start(tmp_path_factory.mktemp("webui_browser"), demo_data)
    yield ui
    ui.app.close()


def _choose(page, dropdown: str, option: str) -> None:
    page.locator(f"{dropdown} input").click()
    page.get_by_role("option", name=option, exact=True).click()


def test_convert_a_30_second_take_in_the_browser(running, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    if not (Path(CHROMIUM).is_file() or shutil.which("chromium")):
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    song = running.data / "long.wav"
    source = sf.info(str(song))
    assert source.duration == pytest.approx(30.0, abs=1e-3)
    shot = Path(os.environ.get("CANTOR_WEBUI_SCREENSHOT", tmp_path / "webui.png"))
    outside: list[str] = []

    def only_local(route):
        url = urlparse(route.request.url)
        if url.scheme in ("http", "https", "ws", "wss") and url.hostname != "127.0.0.1":
            outside.append(route.request.url)
            return route.abort()
        return route.continue_()

    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.route("**/*", only_local)
            page.goto(running.url)
            page.locator("#song input[type=file]").set_input_files(str(song))
            page.locator("#song audio[src]").wait_for(state="attached", timeout=30_000)
            _choose(page, "#convert-experiment", "tiny/teacher (teacher, step 20)")
            page.wait_for_function(
                "() => document.querySelector('#convert-singer input').value === 'demo_A'",
                timeout=30_000)
            _choose(page, "#convert-singer", "demo_B")
            page.locator("#convert-button").click()
            player = page.locator("#converted audio[src]")
            player.wait_for(state="attached", timeout=240_000)
            page.locator("#convert-plot img").wait_for(timeout=30_000)
            status = page.locator("#convert-status textarea").input_value()
            page.screenshot(path=str(shot), full_page=True)
            # The player's source is a blob: URL; read it from inside the page.
            data = page.evaluate(FETCH_BASE64, player.get_attribute("src"))
            wav, sr = sf.read(io.BytesIO(base64.b64decode(data)))
        finally:
            browser.close()
    assert "long.wav -> demo_B (30.0 s" in status
    assert sr == source.samplerate and len(wav) == source.frames
    assert np.sqrt(np.mean(wav ** 2)) > 1e-4 and np.abs(wav).max() > 1e-3
    assert shot.stat().st_size > 10_000
    assert outside == [], f"the page reached outside 127.0.0.1: {outside}"
