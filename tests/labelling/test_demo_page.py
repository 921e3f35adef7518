"""`motion-align app --policy A --policy B` in a real headless Chromium: a caption (typed and clicked, then
typed and entered) gives each policy's motion side by side with the event judge's verdict under each, and
BVH/NPZ downloads. A screenshot is saved as ``demo_page.png`` beside the labelling page's (see
test_browser.py)."""

import io
import shutil

import numpy as np
import pytest
import torch
from labelling_helpers import ARTIFACTS, CHROMIUM, Server
from PIL import Image

from motion_align.data.pair_builders import corpus_prompts

playwright = pytest.importorskip("playwright.sync_api", reason="needs playwright (pip install playwright)")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium: apt-get install chromium")


@pytest.fixture(scope="module")
def two_policies(motion_tokenizer_dir, tmp_path_factory):
    """An untrained tiny LLaMA and T5 on the tiny motion tokenizer (the motion grammar makes their samples
    motions all the same)."""
    from motion_align.policy.generation import record_motion_tokenizer
    from motion_align.policy.model import build_policy, save_policy
    from motion_align.policy.text_tokenizer import train_text_tokenizer
    from motion_tokenizer import MotionVQVAE

    codes = MotionVQVAE.from_pretrained(str(motion_tokenizer_dir)).config.codebook_size
    root = tmp_path_factory.mktemp("demo_policies")
    texts = ["a person jumps twice.", "a person walks forward.", "someone waves.", "a man kicks."] * 4
    for family in ("llama", "t5"):
        torch.manual_seed(0)
        tokenizer = train_text_tokenizer(texts, family, vocab_size=200)
        save_policy(*build_policy(family, "tiny", tokenizer, codes, dropout=0.0), root / family)
        record_motion_tokenizer(root / family, str(motion_tokenizer_dir))
    return [root / "llama", root / "t5"]


@pytest.mark.slow  # about 50 s: two policies, a VQ-VAE and a server that imports torch
def test_demo_page_generates_judges_and_offers_downloads(two_policies, tiny_corpus, tmp_path):
    args = [
        "app",
        "--policy",
        str(two_policies[0]),
        "--policy",
        str(two_policies[1]),
        "--corpus",
        str(tiny_corpus),
        "--split",
        "train",
        "--out",
        str(tmp_path / "app"),
    ]
    server = Server(args, tmp_path / "app.log", module="motion_align.cli", health="/")
    known = corpus_prompts(tiny_corpus, "train", 40, seed=0, require_events=False)[0].caption
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1100, "height": 1100})
            page.goto(server.url, wait_until="load")
            box = page.locator("#caption-box textarea, #caption-box input").first
            box.fill(known)
            page.locator("#generate").click()
            page.wait_for_function(
                "() => { const i = document.querySelector('#demo-render img'); "
                "return i && i.complete && i.naturalWidth > 0; }",
                timeout=120_000,
            )
            first_run = page.locator("#demo-render img").get_attribute("data-run")
            for i, name in enumerate(("llama", "t5")):
                text = page.locator(f"#verdict-{i}").inner_text()
                assert text.startswith(f"{name}: score ") and "integrity" in text
            gif = page.request.get(server.url + page.locator("#demo-render img").get_attribute("src"))
            with Image.open(io.BytesIO(gif.body())) as image:
                assert image.format == "GIF" and image.n_frames >= 40 and image.size[0] >= 2 * 256
            links = page.locator("#downloads a")
            page.wait_for_function("() => document.querySelectorAll('#downloads a').length === 4")
            names = sorted(links.nth(i).get_attribute("download") for i in range(4))
            assert names == ["llama.bvh", "llama.npz", "t5.bvh", "t5.npz"]
            bvh = next(
                links.nth(i) for i in range(4) if links.nth(i).get_attribute("download") == "llama.bvh"
            )
            with page.expect_download() as download:
                bvh.click()
            saved = tmp_path / "llama.bvh"
            download.value.save_as(saved)
            assert saved.read_text().startswith("HIERARCHY")
            npz = np.load(tmp_path / "app" / first_run / "t5.npz", allow_pickle=False)
            assert npz["joints"].shape[1:] == (22, 3)
            box.fill("a person spins on one foot.")  # free text: the judge lists what it detected
            box.press("Enter")
            page.wait_for_function(
                f"() => {{ const i = document.querySelector('#demo-render img'); "
                f"return i && i.dataset.run !== '{first_run}'; }}",
                timeout=120_000,
            )
            page.wait_for_function(
                "() => document.querySelector('#verdict-1').innerText.includes('detected')"
            )
            assert "pick an example for a score" in page.locator("#verdict-0").inner_text()
            assert page.request.get(server.url + "/app/file/..%2F..%2Fetc/passwd").status == 404
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "demo_page.png"), full_page=True)
            browser.close()
    finally:
        server.stop()
    shutil.rmtree(tmp_path / "app", ignore_errors=True)
