"""The Gradio page of `videollava-hf demo`: upload a video or an image, chat about it, see the frames the model saw.

    >>> from videollava_hf.webdemo import DemoEngine
    >>> from videollava_hf.webdemo.app import build_app, launch_options
    >>> app = build_app(DemoEngine(model, processor))  # a loaded Video-LLaVA model and its processor
    >>> app.launch(**launch_options())                 # http://127.0.0.1:7860

Programs call the stable endpoint `/answer` (media file, question) -> answer text, e.g. with `gradio_client`:

    >>> from gradio_client import Client, handle_file
    >>> Client("http://127.0.0.1:7860/", analytics_enabled=False).predict(
    ...     handle_file("clip.mp4"), "What is happening?", api_name="/answer")
"""

from __future__ import annotations

import html
import logging
from collections.abc import Iterator

import gradio as gr

from ..demo import sample_video_path
from .engine import DemoEngine, DemoInputError, Media, VisionSettings, read_media

logger = logging.getLogger(__name__)

POOLING_CHOICES = ("off", "average", "bilinear")
SAMPLE_QUESTIONS = ("What colour is the shape?", "Which way does the shape move?", "How many shapes are there?")
MODEL_EVENTS = "model"  # the concurrency group of everything that runs generate(): one at a time, the rest queue
QUEUE_SIZE = 64
MAX_UPLOAD = "1gb"  # larger uploads are refused by Gradio in the page, before they fill the server's disk
NO_FILE = "No file yet: drop a video or an image above, or pick the sample clip."  # visitors waiting beyond this are told the demo is busy instead of piling up

TITLE = "Video-LLaVA"
SUBTITLE = "chat about videos and images"
INTRO = (
    "Ask questions about a video or an image. Drop a file on the left (or pick the sample clip), type a question, "
    "and the answer streams in; follow-up questions reuse what the model already computed for the media, so they "
    "come back quickly. The strip shows the frames the model looks at, with their times."
)
# Shown when the page runs the bundled model; the demo-model package may provide its own wording.
TOY_MODEL_NOTE = (
    "<b>This is a toy model.</b> The default model is a 1M-parameter Video-LLaVA trained by this project on "
    "synthetic clips of coloured shapes; it only knows their colour, shape, count and motion, and nothing about "
    "real videos. Start <code>videollava-hf demo --model DIR</code> with a converted Video-LLaVA checkpoint for "
    "real ones."
)

CSS = """
.gradio-container { max-width: 1180px !important; margin: 0 auto !important; }
#vl-header h1 { margin-bottom: 0.2em; }
#vl-header h1 small { font-weight: 400; font-size: 0.55em; color: var(--body-text-color-subdued); }
#vl-header p { color: var(--body-text-color-subdued); margin-top: 0; }
.vl-note { border-left: 4px solid #f0a020; background: rgba(240, 160, 32, 0.10); padding: 8px 12px;
           border-radius: 6px; }
.vl-info { color: var(--body-text-color-subdued); padding: 4px 2px; }
.vl-error { border-left: 4px solid #d33; background: rgba(221, 51, 51, 0.10); padding: 8px 12px;
            border-radius: 6px; overflow-wrap: anywhere; }
.vl-section { font-weight: 600; color: var(--block-label-text-color); margin: 0 2px -10px; }
#vl-strip .caption-label { font-variant-numeric: tabular-nums; }
"""


def _theme() -> gr.themes.Base:
    # System fonts only: the page must not reach out to a font CDN (the demo runs offline).
    return gr.themes.Soft(primary_hue="indigo", secondary_hue="sky", neutral_hue="slate",
                          font=["ui-sans-serif", "system-ui", "Segoe UI", "sans-serif"],
                          font_mono=["ui-monospace", "SFMono-Regular", "monospace"])


def info_html(text: str) -> str:
    return f'<div class="vl-info">{html.escape(text)}</div>'


def error_html(text: str) -> str:
    return f'<div class="vl-error">&#9888; {html.escape(text)}</div>'


def toy_model_note() -> str:
    """The notice the page shows for the bundled model (the page's wording of `demo.TOY_MODEL_NOTICE`)."""
    return TOY_MODEL_NOTE


def settings_from(frames, pooling, stride, slowfast) -> VisionSettings:
    return VisionSettings(
        num_frames=int(frames),
        pooling=None if pooling in (None, "off") else str(pooling),
        pool_stride=int(stride),
        slowfast_every=int(slowfast) or None,
    )


class DemoPage:
    """The page's event handlers around one `DemoEngine`."""

    def __init__(self, engine: DemoEngine):
        self.engine = engine

    def load(self, path, frames, pooling, stride, slowfast):
        """A file was dropped or a setting changed: read the media, show its frames; start a new conversation.
        Returns (media, session, chat, strip, status)."""
        settings = settings_from(frames, pooling, stride, slowfast)
        if not path:
            return None, None, [], [], info_html(NO_FILE)
        try:
            media = read_media(path, settings.num_frames)
            self.engine.check_fits(media.kind, settings)
        except DemoInputError as err:
            return None, None, [], [], error_html(str(err))
        status = f"{media.summary} {self.engine.budget_line(media.kind, settings)}"
        return media, None, [], media.strip, info_html(status)

    def ask(self, question, chat, session, media: Media | None, path, frames, pooling, stride, slowfast,
            max_new_tokens, temperature) -> Iterator[tuple]:
        """Stream one answer into the chat. Yields (question box, chat, session, media, status)."""
        chat = list(chat or [])
        question = (question or "").strip()
        if not question:
            yield "", chat, session, media, error_html("Type a question first.")
            return
        settings = settings_from(frames, pooling, stride, slowfast)
        status = gr.update()
        try:
            if path and (media is None or media.path != path):  # asked before the upload's own event ran
                media = read_media(path, settings.num_frames)
                session = None
            if not path:
                media = None
            if session is None:
                session = self.engine.new_session(media, settings)
                if media is not None:
                    status = info_html(f"{media.summary} {self.engine.budget_line(media.kind, settings)}")
            chat += [{"role": "user", "content": question}, {"role": "assistant", "content": ""}]
            for partial in self.engine.stream(session, question, max_new_tokens, temperature):
                chat[-1] = {"role": "assistant", "content": partial}
                yield "", chat, session, media, status
        except DemoInputError as err:
            yield question, _without_empty_turn(chat, question), None, media, error_html(str(err))
        except Exception as err:  # noqa: BLE001 -- a web page shows a message, the server log keeps the traceback
            logger.exception("The demo failed to answer")
            message = f"The model failed to answer ({type(err).__name__}: {err}). Start a new conversation."
            yield question, _without_empty_turn(chat, question), None, media, error_html(message)

    def answer(self, path, question) -> str:
        """The `/answer` endpoint: (media file, question) -> the answer, greedy, the model's own frame policy."""
        if not path:
            raise gr.Error("No media file: send a video or an image together with the question.")
        if not (question or "").strip():
            raise gr.Error("No question: send a question together with the media file.")
        try:
            return self.engine.answer(path, question)
        except DemoInputError as err:
            raise gr.Error(str(err)) from err

    def budget(self, media: Media | None, frames, pooling, stride, slowfast) -> str:
        settings = settings_from(frames, pooling, stride, slowfast)
        return self.engine.budget_line(media.kind if media is not None else "video", settings)


def _without_empty_turn(chat: list, question: str) -> list:
    """The chat without a turn that failed before its answer began (the question stays in the text box)."""
    if len(chat) >= 2 and chat[-1]["content"] == "" and chat[-2]["content"] == question:
        return chat[:-2]
    return chat


def build_app(engine: DemoEngine) -> gr.Blocks:
    """The page, wired to `engine`; start it with `app.launch(**launch_options(...))`."""
    page = DemoPage(engine)
    sample = str(sample_video_path())
    with gr.Blocks(title=f"{TITLE} demo", analytics_enabled=False) as app:
        media_state = gr.State(None)  # Media: the file as read
        # The conversation (its KV cache included) lives for an hour after the visitor's last event.
        session_state = gr.State(None, time_to_live=3600)

        with gr.Column(elem_id="vl-header"):
            gr.Markdown(f"# {TITLE} <small>&middot; {SUBTITLE}</small>\n{INTRO}")
            if engine.is_demo_model:
                gr.HTML(f'<div class="vl-note">{toy_model_note()}</div>')
            else:
                gr.HTML(info_html(f"Model: {engine.model_name}"))

        with gr.Row(equal_height=False):
            with gr.Column(scale=4, min_width=320):
                media = gr.File(label="Video or image", file_types=["video", "image"], type="filepath",
                                elem_id="vl-media", height=120)
                status = gr.HTML(info_html(NO_FILE), elem_id="vl-status")
                gr.HTML('<div class="vl-section">What the model sees</div>')
                strip = gr.Gallery(show_label=False, columns=4, height=252, object_fit="contain",
                                   allow_preview=True, interactive=False, elem_id="vl-strip", format="png")
                with gr.Accordion("Settings", open=False, elem_id="vl-settings"):
                    frames = gr.Slider(1, 32, value=engine.default_frames, step=1, label="Frames from a video",
                                       info="Sampled uniformly, as the original Video-LLaVA does.")
                    pooling = gr.Radio(list(POOLING_CHOICES), value="off", label="Token pooling",
                                       info="Pool each frame's patch grid to fit more frames in the context.")
                    stride = gr.Slider(1, 4, value=2, step=1, label="Pooling stride")
                    slowfast = gr.Slider(0, 8, value=0, step=1, label="SlowFast: full detail every N-th frame",
                                         info="0: off. The other frames are pooled twice as much.")
                    budget = gr.Markdown(page.budget(None, engine.default_frames, "off", 2, 0))
                    max_new_tokens = gr.Slider(1, 512, value=64, step=1, label="Max new tokens")
                    temperature = gr.Slider(0.0, 1.5, value=0.0, step=0.05, label="Temperature",
                                            info="0: greedy (the same answer every time).")

            with gr.Column(scale=5, min_width=400):
                chat = gr.Chatbot(label="Chat", height=420, elem_id="vl-chat",
                                  placeholder="Drop a video or an image, then ask about it. Answers stream in here.")
                with gr.Row(equal_height=True):
                    question = gr.Textbox(label="Question", placeholder="Ask about the video or image, then press "
                                          "Enter", show_label=False, scale=5, elem_id="vl-question", lines=1,
                                          max_lines=3)
                    ask = gr.Button("Ask", variant="primary", scale=1, min_width=80, elem_id="vl-ask")
                new_chat = gr.Button("New conversation", size="sm", variant="secondary", elem_id="vl-new")
                examples_slot = gr.Column()  # filled below, once both of the examples' inputs exist

        with examples_slot:
            gr.Examples(examples=[[sample, q] for q in SAMPLE_QUESTIONS], inputs=[media, question],
                        label="Or try the bundled sample clip", examples_per_page=3)

        # The programs' endpoint: components never shown on the page.
        with gr.Row(visible=False):
            api_media = gr.File(type="filepath", label="media")
            api_question = gr.Textbox(label="question")
            api_answer = gr.Textbox(label="answer")
            api_button = gr.Button()

        vision = [frames, pooling, stride, slowfast]
        loaded = [media_state, session_state, chat, strip, status]
        media.change(page.load, [media, *vision], loaded, api_visibility="private")
        for control in vision:
            control.change(page.load, [media, *vision], loaded, api_visibility="private")
            control.change(page.budget, [media_state, *vision], budget, api_visibility="private")
        ask_inputs = [question, chat, session_state, media_state, media, *vision, max_new_tokens, temperature]
        ask_outputs = [question, chat, session_state, media_state, status]
        for trigger in (ask.click, question.submit):
            trigger(page.ask, ask_inputs, ask_outputs, concurrency_id=MODEL_EVENTS, concurrency_limit=1,
                    api_visibility="private")
        new_chat.click(lambda: (None, []), None, [session_state, chat], api_visibility="private")
        api_button.click(page.answer, [api_media, api_question], api_answer, api_name="answer",
                         concurrency_id=MODEL_EVENTS, concurrency_limit=1)
    app.queue(max_size=QUEUE_SIZE, default_concurrency_limit=1)
    return app


def launch_options(host: str = "127.0.0.1", port: int = 7860, **overrides) -> dict:
    """Keyword arguments for `app.launch`: local address, offline page (no server-side rendering, which needs
    Node), the page's theme and style, access to the bundled sample clip, and the upload limit."""
    options = dict(
        server_name=host, server_port=port, ssr_mode=False, theme=_theme(), css=CSS,
        allowed_paths=[str(sample_video_path().parent)], footer_links=["api"], quiet=True,
        max_file_size=MAX_UPLOAD,
    )
    options.update(overrides)
    return options


__all__ = ["DemoPage", "build_app", "launch_options", "settings_from", "toy_model_note"]
