"""The labelling page (Gradio Blocks): a caption, the pair's looping side-by-side render, a button per
choice with a keyboard shortcut for each, undo, and the labeller's progress.

Every handler calls :class:`~motion_align.labelling.service.LabellingService`, which checks the access
token and stores the label on the server. The name and token are kept in the browser (Gradio's
``BrowserState``, local storage), so a reload goes on where it was: the server hands the labeller the
pair they were shown, in the same order.
"""

from __future__ import annotations

import html
from typing import Any

import gradio as gr

from motion_align.labelling.service import DEGREE_LABELS, AccessDenied, LabellingService
from motion_align.labelling.store import LabelError

#: Keyboard shortcut -> (side, degree); "skip" and "undo" have their own.
SHORTCUTS = {
    "1": ("left", "much_better"),
    "2": ("left", "better"),
    "3": ("left", "slightly_better"),
    "4": ("left", "unsure"),
    "0": ("right", "much_better"),
    "9": ("right", "better"),
    "8": ("right", "slightly_better"),
    "7": ("right", "unsure"),
}
SKIP_KEY, UNDO_KEY = "s", "u"

PAGE_CSS = ".pair-render img { max-width: 100%; image-rendering: auto; } #caption h3 { margin: 0.2em 0; }"


def button_id(side: str, degree: str | None = None) -> str:
    """The element id of a choice's button (the shortcuts click it)."""
    return f"pick-{side}" + (f"-{degree}" if degree else "")


def _choices(side: str) -> list[tuple[str, str]]:
    """(key, degree) of one side's buttons, strongest first."""
    return [(key, degree) for key, (s, degree) in SHORTCUTS.items() if s == side]


def _keyboard_script() -> str:
    keys = {key: button_id(side, degree) for key, (side, degree) in SHORTCUTS.items()}
    keys.update({SKIP_KEY: button_id("skip"), UNDO_KEY: "undo"})
    entries = ", ".join(f'"{key}": "{element}"' for key, element in keys.items())
    return f"""<script>
document.addEventListener("keydown", (event) => {{
  const target = event.target;
  if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
  const typing = target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA");
  if (typing || (target && target.isContentEditable)) return;
  const keys = {{{entries}}};
  const id = keys[event.key.toLowerCase()];
  const button = id && document.getElementById(id);
  if (button && !button.disabled) {{ event.preventDefault(); button.click(); }}
}});
</script>"""


KEYBOARD_SCRIPT = _keyboard_script()


def _help() -> str:
    left, right = (
        ", ".join(f"**{key}** {DEGREE_LABELS[degree]}" for key, degree in _choices(side))
        for side in ("left", "right")
    )
    return (
        "Read the caption, watch both motions (they loop), and say which one matches it better, and by how "
        "much. Skip a pair you cannot judge.\n\n"
        f"Keyboard: A (left) is {left}. B (right) is {right}. **{SKIP_KEY.upper()}** skip, "
        f"**{UNDO_KEY.upper()}** undo the last label."
    )


def labelling_page(service: LabellingService) -> gr.Blocks:
    """The Gradio page of ``service``."""
    with gr.Blocks(title="motion-align labelling") as page:
        saved = gr.BrowserState(
            {"labeller": "", "token": ""}, storage_key="motion-align-labeller", secret=service.store.salt
        )
        current = gr.State(None)
        gr.Markdown("## Which motion matches the caption better?\n\n" + _help())
        with gr.Row(equal_height=True):
            name = gr.Textbox(label="Your name", elem_id="labeller", max_lines=1, scale=2)
            token = gr.Textbox(
                label="Access token",
                type="password",
                elem_id="token",
                max_lines=1,
                scale=2,
                visible=service.needs_token,
            )
            start = gr.Button("Start labelling", variant="primary", elem_id="start", scale=1)
        status = gr.Markdown("Type your name and press **Start labelling**.", elem_id="status")
        caption = gr.Markdown(elem_id="caption")
        render = gr.HTML(elem_id="render", elem_classes="pair-render")
        with gr.Row():
            columns = {}
            for side, title in (("left", "A (left) is"), ("skip", ""), ("right", "B (right) is")):
                with gr.Column(min_width=160):
                    if side == "skip":
                        columns["skip"] = [gr.Button(f"Skip ({SKIP_KEY.upper()})", elem_id=button_id("skip"))]
                        undo = gr.Button(f"Undo last ({UNDO_KEY.upper()})", elem_id="undo", variant="stop")
                        continue
                    gr.Markdown(f"**{title}**")
                    columns[side] = [
                        gr.Button(f"{DEGREE_LABELS[degree]} ({key})", elem_id=button_id(side, degree))
                        for key, degree in _choices(side)
                    ]
        shown = [status, caption, render, current]

        def show(result: dict[str, Any], labeller: str, note: str = "") -> tuple:
            pair, p = result["pair"], result["progress"]
            text = (
                f"**{html.escape(labeller.strip())}**: {p['mine']} labelled, {p['left']} to go; "
                f"{p['pairs_done']} of {p['pairs']} pairs done."
            )
            text += f" {note}" if note else ""
            if pair is None:
                return text, "### All done: no pair wants a label from you now. Thank you!", "", None
            image = (
                f'<img src="{pair["render"]}" alt="two motions, A on the left and B on the right" '
                f'data-pair="{pair["pair_id"]}" data-left="{pair["left_motion"]}">'
            )
            state = {"pair_id": pair["pair_id"], "left_motion": pair["left_motion"]}
            return text, f"### {html.escape(pair['prompt'])}", image, state

        def refused(error: Exception) -> tuple:
            return f"**Cannot go on:** {html.escape(str(error))}", gr.skip(), gr.skip(), gr.skip()

        def begin(labeller: str, given: str) -> tuple:
            try:
                return (
                    *show(service.next(labeller, given), labeller),
                    {"labeller": labeller, "token": given},
                )
            except (AccessDenied, LabelError) as error:
                return (*refused(error), gr.skip())

        def restore(stored: dict | None) -> tuple:
            stored = stored or {}
            labeller, given = stored.get("labeller") or "", stored.get("token") or ""
            if not labeller:  # a first visit: leave the page as it is (the labeller may be typing already)
                return (gr.skip(),) * 6
            try:
                return labeller, given, *show(service.next(labeller, given), labeller)
            except (AccessDenied, LabelError) as error:
                return labeller, given, *refused(error)

        def choose(side: str, degree: str | None):
            def handler(labeller: str, given: str, state: dict | None) -> tuple:
                if not state:
                    return refused(LabelError("no pair is shown: press Start labelling"))
                try:
                    result = service.label(
                        labeller, given, state["pair_id"], side, degree, state["left_motion"]
                    )
                except LabelError as error:
                    if not error.conflict:
                        return refused(error)
                    return show(service.next(labeller, given), labeller, f"(not stored: {error})")
                except AccessDenied as error:
                    return refused(error)
                return show(result, labeller)

            return handler

        def take_back(labeller: str, given: str) -> tuple:
            try:
                result = service.undo(labeller, given)
            except (AccessDenied, LabelError) as error:
                return refused(error)
            return show(
                result, labeller, "Undone: label it again." if result["undone"] else "Nothing to undo."
            )

        start.click(begin, [name, token], [*shown, saved])
        name.submit(begin, [name, token], [*shown, saved])
        page.load(restore, [saved], [name, token, *shown])
        for side, buttons in columns.items():
            degrees = [None] if side == "skip" else [degree for _, degree in _choices(side)]
            for button, degree in zip(buttons, degrees):
                button.click(choose(side, degree), [name, token, current], shown, concurrency_limit=None)
        undo.click(take_back, [name, token], shown)
    return page
