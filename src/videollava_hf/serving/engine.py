"""The generation side of the server: one model, one worker thread, requests answered first come, first served.

`prepare` (run in the web framework's thread pool, so media of waiting requests decode in parallel) turns a
`ChatRequest` into model inputs and checks them; `run` queues the `generate()` call on the single worker thread. One
`generate()` at a time keeps memory bounded and `seed` reproducible (torch's global generator is only touched there).
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList, TextStreamer

from .media import load_part
from .protocol import ChatRequest, RequestError

DEFAULT_MAX_TOKENS = 256


@dataclass
class Prepared:
    inputs: dict  # processor output: input_ids (1, L), attention_mask, pixel_values / pixel_values_videos
    prompt_tokens: int
    max_new_tokens: int
    sampling: dict  # do_sample / temperature / top_p for generate()
    seed: int | None


@dataclass
class Result:
    text: str
    completion_tokens: int
    finish_reason: str  # "stop" (end of turn) or "length" (max_tokens reached)


class _Cancelled(StoppingCriteria):
    """Stops generate() once the client has gone away."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


class QueueStreamer(TextStreamer):
    """Hands each piece of decoded answer text to an asyncio queue (thread-safe), for server-sent events."""

    def __init__(self, tokenizer, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue):
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.loop, self.queue = loop, queue

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        if text:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, text)


class Engine:
    """A model and its processor behind a one-thread queue; `max_queue` requests may wait (more get HTTP 503)."""

    def __init__(self, model, processor, local_media_dirs: tuple[Path, ...] = (), max_queue: int = 64,
                 media_timeout: float = 30.0):
        self.model = model.eval()
        self.processor = processor
        self.local_media_dirs = local_media_dirs
        self.max_queue = max_queue
        self.media_timeout = media_timeout
        self.context_length = int(model.config.get_text_config().max_position_embeddings)
        eos = model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, (list, tuple)) else [] if eos is None else [eos])
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="videollava-generate")
        self._waiting = 0

    # --- request -> inputs (any thread) ----------------------------------------------------------------------
    def prepare(self, request: ChatRequest) -> Prepared:
        try:
            loaded = [(kind, load_part(kind, url, where, self.local_media_dirs, self.media_timeout))
                      for kind, url, where in request.media]
            images = [m for kind, m in loaded if kind == "image"]
            videos = [m for kind, m in loaded if kind == "video"]
            prompt = self.processor.apply_chat_template(request.messages, tokenize=False, add_generation_prompt=True)
            inputs = self.processor(text=prompt, images=images or None, videos=videos or None, return_tensors="pt")
        except (ValueError, OSError) as err:  # unreadable media (VideoDecodeError, MediaError), placeholder counts
            raise RequestError(str(err), "messages") from err
        inputs = inputs.to(self.model.device)
        for key in ("pixel_values", "pixel_values_videos"):
            if key in inputs:
                inputs[key] = inputs[key].to(self.model.dtype)
        prompt_tokens = int(inputs["input_ids"].shape[-1])
        max_new_tokens = self._check_length(prompt_tokens, request.max_tokens, len(images), len(videos))
        return Prepared(dict(inputs), prompt_tokens, max_new_tokens, _sampling(request), request.seed)

    def _check_length(self, prompt_tokens: int, max_tokens: int | None, images: int, videos: int) -> int:
        room = self.context_length - prompt_tokens
        media = f" ({images} image(s) and {videos} video(s) included)" if images or videos else ""
        if room < 1 or (max_tokens is not None and max_tokens > room):
            asked = f" plus max_tokens={max_tokens}" if max_tokens is not None else ""
            raise RequestError(
                f"The prompt is {prompt_tokens} tokens{media}{asked}, more than the model's context of "
                f"{self.context_length} tokens. Shorten the conversation, send fewer images/videos"
                + (", or lower max_tokens." if max_tokens is not None else "."),
                "max_tokens" if max_tokens is not None and room >= 1 else "messages",
                code="context_length_exceeded",
            )
        return max_tokens if max_tokens is not None else min(DEFAULT_MAX_TOKENS, room)

    # --- the queue ----------------------------------------------------------------------------------------
    def check_capacity(self) -> None:
        if self._waiting >= self.max_queue:
            raise RequestError(
                f"The server is busy ({self._waiting} requests queued, the limit is {self.max_queue}); retry later.",
                status=503, code="server_busy",
            )

    async def run(self, prepared: Prepared, streamer: TextStreamer | None = None,
                  cancel: threading.Event | None = None) -> Result | None:
        """Queue one generate() call and wait for it; None when `cancel` was set before it finished."""
        self.check_capacity()
        cancel = cancel or threading.Event()
        self._waiting += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._worker, self._generate, prepared, streamer, cancel)
        except asyncio.CancelledError:  # the client went away while waiting: do not spend the model on it
            cancel.set()
            raise
        finally:
            self._waiting -= 1

    def _generate(self, prepared: Prepared, streamer, cancel: threading.Event) -> Result | None:
        if cancel.is_set():
            return None
        if prepared.seed is not None:
            torch.manual_seed(prepared.seed)  # only this thread draws from torch's generator
        with torch.inference_mode():
            sequences = self.model.generate(
                **prepared.inputs,
                max_new_tokens=prepared.max_new_tokens,
                streamer=streamer,
                stopping_criteria=StoppingCriteriaList([_Cancelled(cancel)]),
                **prepared.sampling,
            )  # (1, L + new)
        new = sequences[0, prepared.prompt_tokens:].tolist()
        ended = bool(new) and new[-1] in self.eos_ids
        text = self.processor.decode(new, skip_special_tokens=True).strip()
        finish = "length" if len(new) >= prepared.max_new_tokens and not ended else "stop"
        return Result(text=text, completion_tokens=len(new), finish_reason=finish)

    def close(self) -> None:
        self._worker.shutdown(wait=False, cancel_futures=True)


def _sampling(request: ChatRequest) -> dict[str, Any]:
    """OpenAI's temperature / top_p -> generate() options; neither given: the model's generation_config decides."""
    if request.temperature == 0:
        return {"do_sample": False}
    options: dict[str, Any] = {}
    if request.temperature is not None:
        options["temperature"] = request.temperature
    if request.top_p is not None:
        options["top_p"] = request.top_p
    if options:
        options["do_sample"] = True
    return options


__all__ = ["DEFAULT_MAX_TOKENS", "Engine", "Prepared", "QueueStreamer", "Result"]
