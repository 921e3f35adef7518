"""The labelling page as a person uses it, in a real headless Chromium (Debian's ``chromium``, driven by
Playwright): sign in with a name and the access token, label with the mouse and with the keyboard, skip,
undo, reload and go on where it was. The store must then hold exactly those labels, in the order shown.
A screenshot of the page is saved to ``$MOTION_ALIGN_ARTIFACTS`` (default ``tests/artifacts/``, ignored by
git) as ``labelling_page.png``."""

import io
import time
from pathlib import Path

import pytest
from labelling_helpers import ARTIFACTS, CHROMIUM, Server, generations_folder
from PIL import Image

from motion_align.labelling.store import LabelStore

playwright = pytest.importorskip("playwright.sync_api", reason="needs playwright (pip install playwright)")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Chromium: apt-get install chromium (.ci/run installs it)"
)
TOKEN = "let-me-label"


def _shown(page) -> tuple[str, str]:
    """(pair id, left motion) of the render on the page, once its image has loaded."""
    page.wait_for_function(
        "() => { const i = document.querySelector('#render img[data-pair]'); return i && i.complete && "
        "i.naturalWidth > 0; }",
        timeout=60_000,
    )
    image = page.locator("#render img[data-pair]")
    return image.get_attribute("data-pair"), image.get_attribute("data-left")


def _next(page, before: str) -> tuple[str, str]:
    """The pair shown once the page has moved on from ``before``."""
    page.wait_for_function(
        f"() => {{ const i = document.querySelector('#render img[data-pair]'); return i && "
        f"i.dataset.pair !== '{before}'; }}",
        timeout=60_000,
    )
    return _shown(page)


def test_label_with_mouse_and_keyboard_undo_and_reload(tiny_corpus, tmp_path):
    folder = generations_folder(tiny_corpus, tmp_path / "generations", prompts=4)
    db = tmp_path / "labels.db"
    server = Server(
        [
            "--candidates",
            str(folder),
            "--codebook-size",
            "16",
            "--store",
            str(db),
            "--labels-per-pair",
            "1",
            "--render-size",
            "160",
            "--token-env",
            "LABEL_TOKEN",
        ],
        tmp_path / "server.log",
        env={"LABEL_TOKEN": TOKEN},
    )
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1100, "height": 1000})
            page.goto(server.url, wait_until="load")
            page.locator("#labeller input, #labeller textarea").first.fill("alice")
            page.locator("#token input").first.fill("wrong")
            page.locator("#start").click()
            page.wait_for_function(
                "() => document.querySelector('#status').innerText.includes('access token')"
            )
            assert "wrong or missing access token" in page.locator("#status").inner_text()
            page.locator("#token input").first.fill(TOKEN)
            page.locator("#start").click()
            first = _shown(page)
            renders, deadline = Path(f"{db}.renders"), time.monotonic() + 60
            while len(list(renders.glob("[!.]*.gif"))) < 4 and time.monotonic() < deadline:
                time.sleep(0.1)  # the three pairs after the first are drawn ahead, unasked
            ahead = {gif.name for gif in renders.glob("[!.]*.gif")}
            gif = page.request.get(server.url + page.locator("#render img").get_attribute("src"))
            with Image.open(io.BytesIO(gif.body())) as image:  # a looping animation, not a still
                assert image.format == "GIF" and image.n_frames > 10 and image.info.get("loop") == 0
            page.locator("#pick-left-much_better").click()  # the mouse
            second = _next(page, first[0])
            page.locator("body").click(position={"x": 5, "y": 5})  # focus off the text fields
            page.keyboard.press("9")  # B (right) is better
            third = _next(page, second[0])
            page.keyboard.press("s")  # skip
            fourth = _next(page, third[0])
            page.keyboard.press("u")  # undo the skip: the third pair again, in the same order
            assert _next(page, fourth[0]) == third
            assert "Undone" in page.locator("#status").inner_text()
            page.reload(wait_until="load")
            assert _shown(page) == third  # the reload goes on where it was, name and token kept
            assert page.locator("#labeller input, #labeller textarea").first.input_value() == "alice"
            page.locator("body").click(position={"x": 5, "y": 5})
            page.keyboard.press("4")  # A (left) is negligibly better / unsure
            _next(page, third[0])
            page.wait_for_function("() => document.querySelector('#status').innerText.includes('3 labelled')")
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "labelling_page.png"), full_page=True)
            browser.close()
    finally:
        server.stop()
    other = {"a": "b", "b": "a"}
    expected = [
        (first[0], first[1], "much_better"),
        (second[0], other[second[1]], "better"),
        (third[0], third[1], "unsure"),
    ]
    assert {f"{pair}-{left}.gif" for pair, left in (first, second, third, fourth)} == ahead
    store = LabelStore(db)
    labels = [(lb.pair_id, lb.choice, lb.degree) for lb in store.labels()]
    assert labels == expected
    assert all(lb.labeller == "alice" for lb in store.labels())
    assert (ARTIFACTS / "labelling_page.png").stat().st_size > 10_000
