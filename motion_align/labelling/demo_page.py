"""``motion-align app --policy A [--policy B]``: a demo page. Type a caption, and each policy generates a
motion for it; the motions loop side by side on one camera, with the event judge's verdict under each, and
each can be downloaded as BVH (Blender, game engines) and NPZ (numpy).

The event judge scores a motion against the events a caption asks for. Those are known for the captions of a
corpus (``--corpus``: its clips' ground-truth events; the page offers them as examples); for a caption typed
freely the verdict lists what the judge detected in the motion. Sampling uses the motion grammar (start
token, 10-49 codes, end token) unless ``--no-grammar``, so that an untrained or small policy still shows a
motion. Generations run one at a time (a lock): on a CPU they would only slow each other down.
"""

from __future__ import annotations

import html
import itertools
import re
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

#: Longest caption the page accepts.
MAX_CAPTION = 300
_FILE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def policy_names(paths: list[str], names: list[str] | None) -> list[str]:
    """Display names: ``names`` when given (one per policy), else the folders' names, else A, B, ..."""
    if names:
        if len(names) != len(paths):
            raise ValueError(f"--name was given {len(names)} times for {len(paths)} --policy")
        chosen = names
    else:
        chosen = [Path(p.rstrip("/")).name or p for p in paths]
    if len(set(chosen)) < len(chosen):
        chosen = [chr(ord("A") + i) for i in range(len(paths))]
    return chosen


class PolicyDemo:
    """The policies of the page, loaded once, and what one generation gives (:meth:`generate`)."""

    def __init__(
        self,
        policies: list[str],
        names: list[str] | None = None,
        tokenizer: str | None = None,
        corpus: str | None = None,
        split: str = "test",
        out: str | None = None,
        grammar: bool = True,
    ) -> None:
        from motion_align.policy.generation import load_generator
        from motion_align.rewards.event_judge import EventJudge

        if not 1 <= len(policies) <= 4:
            raise ValueError(f"give one to four --policy, got {len(policies)}")
        self.names = policy_names(policies, names)
        self.models = {name: load_generator(path, tokenizer) for name, path in zip(self.names, policies)}
        self.judge, self.grammar = EventJudge(), grammar
        self.examples: dict[str, list] = {}
        if corpus is not None:
            from motion_align.data.pair_builders import corpus_prompts

            prompts = corpus_prompts(corpus, split, 40, seed=0, require_events=False)
            self.examples = {p.caption: p.spec for p in prompts if p.spec}
        self.out = Path(out) if out else Path(tempfile.mkdtemp(prefix="motion-align-app-"))
        self.out.mkdir(parents=True, exist_ok=True)
        self._lock, self._runs = threading.Lock(), itertools.count()

    def generate(self, caption: str, seed: int = 0) -> dict[str, Any]:
        """Motions of every policy for ``caption``: ``run`` (a folder name under ``out``), ``render`` (the
        side-by-side GIF's file name, None when no policy gave a motion), ``verdicts`` (name -> line),
        ``files`` (BVH and NPZ paths)."""
        from motion_align.policy.generation import SamplingConfig, generate_motions

        caption = (caption or "").strip()
        if not caption or len(caption) > MAX_CAPTION:
            raise ValueError(f"type a caption of 1 to {MAX_CAPTION} characters")
        sampling = SamplingConfig(seed=int(seed), motion_grammar=self.grammar)
        with self._lock:
            run = f"run{next(self._runs):05d}"
            folder = self.out / run
            folder.mkdir(parents=True, exist_ok=True)
            motions = {
                name: generate_motions(model, tokenizer, vq, [caption], sampling)[0]
                for name, (model, tokenizer, vq) in self.models.items()
            }
            return self._show(caption, folder, motions)

    def _show(self, caption: str, folder: Path, motions: dict[str, Any]) -> dict[str, Any]:
        from motion_align.interop.export import export_motion
        from motion_align.motion.render import render_side_by_side

        usable = {name: m for name, m in motions.items() if m.features is not None}
        render = None
        if usable:
            joints = [m.joints for m in usable.values()]
            render_side_by_side(
                joints, folder / "motions", caption, labels=list(usable), formats=("gif",), size=(256, 256)
            )
            render = "motions.gif"
        files = []
        for n, (name, motion) in enumerate(usable.items()):
            stem = re.sub(r"[^A-Za-z0-9_-]+", "_", name) or f"policy{n}"
            np.save(folder / f"{stem}.npy", motion.features.astype(np.float32))
            files += [str(f.path) for f in export_motion(folder / f"{stem}.npy", folder, ("bvh", "npz"))]
        verdicts = {name: self.verdict(caption, m) for name, m in motions.items()}
        return {"run": folder.name, "render": render, "verdicts": verdicts, "files": files}

    def verdict(self, caption: str, motion: Any) -> str:
        """The event judge on one motion: its score against the caption's events when they are known, else
        the events it detected."""
        from motion_align.demo.alignment_stages import verdict

        if motion.features is None:
            return f"no motion ({'; '.join(motion.problems) or 'no codes'})"
        spec = self.examples.get(caption)
        try:
            if spec:
                return verdict(self.judge, spec, motion)
            seen = ", ".join(
                f"{e.action}"
                + (f" ({e.limb or e.direction})" if e.limb or e.direction else "")
                + f" x{e.count}"
                for e in self.judge.detect(motion.features)
            )
        except ValueError as error:  # e.g. a KIT-ML motion, which the judge does not read
            return f"not judged: {error}"
        return (
            f"detected: {seen or 'no judged event'} ({motion.num_frames} frames; the caption's events are "
            "unknown: pick an example for a score)"
        )

    def file(self, run: str, name: str) -> Path:
        """A file of a run, refused unless it is a plain name inside ``out``."""
        if not _FILE_NAME.match(run) or not _FILE_NAME.match(name) or ".." in (run + name):
            raise KeyError(f"no file {run}/{name}")
        path = self.out / run / name
        if not path.is_file():
            raise KeyError(f"no file {run}/{name}")
        return path


def demo_app(demo: PolicyDemo) -> Any:
    """The FastAPI app: the page at ``/`` and the renders at ``/app/file/{run}/{name}``."""
    import gradio as gr
    from fastapi import FastAPI
    from fastapi.responses import FileResponse, JSONResponse

    app = FastAPI(title="motion-align demo", docs_url=None, redoc_url=None)

    @app.get("/app/file/{run}/{name}")
    def file(run: str, name: str) -> Any:
        try:
            return FileResponse(demo.file(run, name))
        except KeyError as error:
            return JSONResponse({"error": str(error.args[0])}, status_code=404)

    with gr.Blocks(title="motion-align demo") as page:
        gr.Markdown(
            f"## Text to motion: {' vs '.join(demo.names)}\n\nType a caption and press **Generate**. "
            "Each policy's motion loops side by side; the event judge's verdict is under it."
        )
        with gr.Row(equal_height=True):
            caption = gr.Textbox(label="Caption", elem_id="caption-box", max_lines=2, scale=4)
            seed = gr.Number(0, label="Seed", precision=0, elem_id="seed", scale=1)
            run = gr.Button("Generate", variant="primary", elem_id="generate", scale=1)
        if demo.examples:
            examples = gr.Dropdown(
                list(demo.examples),
                label="Captions with known events (from the corpus)",
                elem_id="examples",
                value=None,
            )
            examples.change(lambda text: text or gr.skip(), examples, caption)
        render = gr.HTML(elem_id="demo-render")
        with gr.Row():
            verdicts = [
                gr.Markdown(f"**{html.escape(name)}**", elem_id=f"verdict-{i}")
                for i, name in enumerate(demo.names)
            ]
        downloads = gr.File(label="Download (BVH, NPZ)", file_count="multiple", elem_id="downloads")

        def generate(text: str, number: float | None) -> tuple:
            try:
                result = demo.generate(text, int(number or 0))
            except ValueError as error:
                return (f"**{html.escape(str(error))}**", *[gr.skip()] * len(demo.names), gr.skip())
            image = (
                ""
                if result["render"] is None
                else f'<img src="/app/file/{result["run"]}/{result["render"]}" data-run="{result["run"]}" '
                f'alt="the motions side by side">'
            )
            lines = [f"**{html.escape(n)}**: {html.escape(result['verdicts'][n])}" for n in demo.names]
            return (image, *lines, result["files"] or None)

        run.click(generate, [caption, seed], [render, *verdicts, downloads])
        caption.submit(generate, [caption, seed], [render, *verdicts, downloads])
    return gr.mount_gradio_app(
        app, page, path="/", allowed_paths=[str(demo.out)], ssr_mode=False, footer_links=[]
    )


def run_app(args: Any) -> None:
    """``motion-align app``: load the policies and serve the page until interrupted."""
    import os

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from motion_align.labelling.server import serve

    demo = PolicyDemo(
        args.policy, args.name, args.tokenizer, args.corpus, args.split, args.out, not args.no_grammar
    )
    print(
        f"demo of {', '.join(demo.names)} at http://{args.host}:{args.port}/ (files in {demo.out})",
        flush=True,
    )
    serve(demo_app(demo), args.host, args.port)


def add_app_arguments(parser: Any) -> None:
    """The flags of ``motion-align app``."""
    parser.add_argument(
        "--policy", action="append", required=True, help="policy folder or Hub id (1 to 4 times)"
    )
    parser.add_argument(
        "--name", action="append", default=None, help="display name of each --policy, in order"
    )
    parser.add_argument("--tokenizer", default=None, help="motion tokenizer (default: each policy's record)")
    parser.add_argument(
        "--corpus", default=None, help="HumanML3D folder whose captions' events the judge knows"
    )
    parser.add_argument("--split", default="test", help="--corpus split the example captions come from")
    parser.add_argument(
        "--out", default=None, help="where renders and downloads go (default: a temporary folder)"
    )
    parser.add_argument("--no-grammar", action="store_true", help="sample without the motion grammar")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=7861)
    parser.set_defaults(func=run_app)
