"""What the web demo does, without the page: load a model, read the uploaded media once, keep one `ChatSession` per
visitor and stream its answers. The Gradio page (`app.py`) only wires these functions to components, so they can be
tested and reused without a browser.

Reading the media: a video is decoded once with `load_video` (the frames the model will see, and their presentation
times for the frame strip); the chat session gets those frames as an array, so the processor samples them again with
the identity policy (n of n frames) instead of decoding the file a second time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..inference.chat import ChatSession
from ..models.videollava.video_io import load_video

# Thumbnails in the frame strip: small sources (the demo clips are 64 px) are enlarged with nearest-neighbour so the
# shapes stay crisp; large ones are shrunk so the page stays light.
THUMB_MIN_SIDE = 160
THUMB_MAX_SIDE = 320
ANSWER_RESERVE = 16  # tokens kept free for the answer when checking that the prompt fits the context


class DemoInputError(Exception):
    """A problem with what the visitor gave (file, settings); the page shows the message, never a traceback."""


@dataclass(frozen=True)
class VisionSettings:
    """The settings that change what the towers see; changing any of them starts a new conversation."""

    num_frames: int
    pooling: str | None = None  # None, "average" or "bilinear"
    pool_stride: int = 2
    slowfast_every: int | None = None  # full detail on every n-th frame, 2x stride on the others

    def processor_kwargs(self) -> dict:
        return {"num_frames": self.num_frames, "video_pooling": self.pooling, "video_pool_stride": self.pool_stride,
                "video_slowfast_every": self.slowfast_every}


@dataclass
class Media:
    """One uploaded file, read: what the model gets, and the strip the visitor sees."""

    path: str
    kind: str  # "video" or "image"
    payload: Any  # (F, H, W, 3) uint8 frames for a video, a PIL image for an image
    strip: list[tuple[Image.Image, str]] = field(default_factory=list)  # (thumbnail, caption)
    summary: str = ""


def thumbnail(frame: np.ndarray | Image.Image) -> Image.Image:
    image = frame if isinstance(frame, Image.Image) else Image.fromarray(frame)
    side = min(image.size)
    if side < THUMB_MIN_SIDE:
        scale = THUMB_MIN_SIDE / side
        return image.resize((round(image.width * scale), round(image.height * scale)), Image.NEAREST)
    if max(image.size) > THUMB_MAX_SIDE:
        image = image.copy()
        image.thumbnail((THUMB_MAX_SIDE, THUMB_MAX_SIDE))
    return image


def open_still_image(path: str | Path) -> Image.Image | None:
    """The file as an RGB image, or None when Pillow cannot read it or it has several frames (an animation is a
    video to Video-LLaVA)."""
    try:
        with Image.open(path) as opened:
            if getattr(opened, "n_frames", 1) > 1:
                return None
            return opened.convert("RGB")
    except UnidentifiedImageError:
        return None


def read_media(path: str | Path, num_frames: int) -> Media:
    """Read `path`: an image Pillow opens, else a video (`num_frames` uniform frames, the original policy). A file
    that is neither raises DemoInputError with the video reader's explanation."""
    name = Path(path).name
    try:
        image = open_still_image(path)
        if image is not None:
            return Media(str(path), "image", image, [(thumbnail(image), "the image")],
                         f"Image {name}: {image.width}x{image.height}.")
        frames, meta = load_video(str(path), num_frames=num_frames)  # (F, H, W, 3) uint8
    except (ValueError, OSError) as err:  # VideoDecodeError is a ValueError; messages are written for users
        # The upload's path is a long temporary one; the visitor knows the file by its name.
        message = str(err).replace(f"'{path}'", name).replace(str(path), name)
        raise DemoInputError(f"Could not read {name} as an image or a video: {message}") from err
    strip = [(thumbnail(f), f"{t:.2f} s") for f, t in zip(frames, meta.timestamps)]
    duration = f"{meta.duration:.2f} s" if meta.duration is not None else "unknown length"
    repeated = " (the video has fewer frames than that, so some repeat)" if meta.repeated_frames else ""
    summary = (f"Video {name}: {duration}, {meta.total_frames} frames at {meta.fps or 0:.3g} fps, "
               f"{meta.width}x{meta.height}; the model sees {len(frames)} frames{repeated}.")
    return Media(str(path), "video", frames, strip, summary)


class DemoEngine:
    """A model and its processor, and what the page does with them (`videollava-hf demo` loads the checkpoint as
    `videollava-hf ask` does and passes them in).

    Args:
        model, processor: a Video-LLaVA model (eval mode) and its `VideoLlavaHfProcessor`.
        model_name: how the page names the model.
        is_demo_model: the bundled toy model (the page then says what it can and cannot do).
    """

    def __init__(self, model, processor, model_name: str = "a Video-LLaVA model", is_demo_model: bool = False):
        self.model, self.processor = model, processor
        self.model_name = model_name
        self.is_demo_model = is_demo_model
        self.default_frames = int(self.processor.video_processor.num_frames)
        self.context_length = int(getattr(self.model.config.get_text_config(), "max_position_embeddings", 0) or 0)
        # One generate() at a time per process: Gradio's queue already serialises the events that share the
        # "model" concurrency group; the lock also covers callers that use the engine directly from threads.
        self.lock = threading.Lock()

    # --- token budget ----------------------------------------------------------------------------------------
    def media_tokens(self, kind: str, settings: VisionSettings) -> int:
        if kind == "image":
            return self.processor.image_seq_length
        return self.processor.video_seq_length(
            settings.num_frames, pooling=settings.pooling, stride=settings.pool_stride,
            slowfast_every=settings.slowfast_every,
        )

    def budget_line(self, kind: str | None, settings: VisionSettings) -> str:
        """e.g. "8 frames \u2192 296 video tokens (of a 1024-token context)"."""
        context = f" (of a {self.context_length}-token context)" if self.context_length else ""
        if kind == "image":
            return f"The image takes {self.media_tokens('image', settings)} tokens{context}."
        tokens = self.media_tokens("video", settings)
        return f"{settings.num_frames} frames \u2192 {tokens} video tokens{context}."

    def check_fits(self, kind: str, settings: VisionSettings) -> None:
        if not self.context_length:
            return
        tokens = self.media_tokens(kind, settings)
        if tokens + ANSWER_RESERVE > self.context_length:
            raise DemoInputError(
                f"{settings.num_frames} frames take {tokens} video tokens, more than this model's "
                f"{self.context_length}-token context allows. Use fewer frames, or turn on pooling / SlowFast."
            )

    # --- conversations ---------------------------------------------------------------------------------------
    def new_session(self, media: Media | None, settings: VisionSettings) -> ChatSession:
        """A conversation about `media` (or text only); the towers run at its first question."""
        if media is None:
            return ChatSession(self.model, self.processor)
        self.check_fits(media.kind, settings)
        if media.kind == "image":
            return ChatSession(self.model, self.processor, image=media.payload)
        frames = media.payload
        kwargs = {**settings.processor_kwargs(), "num_frames": len(frames)}  # the frames already sampled
        return ChatSession(self.model, self.processor, video=frames, **kwargs)

    def stream(self, session: ChatSession, question: str, max_new_tokens: int = 64,
               temperature: float = 0.0) -> Iterator[str]:
        """Yield the answer so far as it is generated; the last value is the whole answer (as `session` keeps it)."""
        from transformers import TextIteratorStreamer

        question = question.strip()
        if not question:
            raise DemoInputError("Type a question first.")
        generate_kwargs: dict = {"max_new_tokens": int(max_new_tokens)}
        if temperature and temperature > 0:
            generate_kwargs.update(do_sample=True, temperature=float(temperature))
        else:
            generate_kwargs["do_sample"] = False
        streamer = TextIteratorStreamer(self.processor.tokenizer, skip_prompt=True, skip_special_tokens=True,
                                        timeout=600)
        result: dict = {}

        def work() -> None:
            try:
                with self.lock:
                    result["answer"] = session.ask(question, streamer=streamer, **generate_kwargs)
            except Exception as err:  # noqa: BLE001 -- handed to the caller's thread below
                result["error"] = err
                streamer.end()  # unblock the reader

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        text, shown = "", ""
        for piece in streamer:
            text += piece
            if text.strip() != shown:  # the streamer also hands out empty pieces (special tokens, word breaks)
                shown = text.strip()
                yield shown
        thread.join()
        if "error" in result:
            err = result["error"]
            if isinstance(err, (ValueError, OSError)):  # the library's messages are written for users
                raise DemoInputError(str(err)) from err
            raise err
        yield result["answer"]

    def answer(self, path: str | Path, question: str, max_new_tokens: int = 64) -> str:
        """One greedy answer about the media at `path` with the model's own frame policy (the `/answer` API)."""
        settings = VisionSettings(num_frames=self.default_frames)
        media = read_media(path, settings.num_frames)
        *_, final = self.stream(self.new_session(media, settings), question, max_new_tokens=max_new_tokens)
        return final


__all__ = ["DemoEngine", "DemoInputError", "Media", "VisionSettings", "open_still_image", "read_media", "thumbnail"]
