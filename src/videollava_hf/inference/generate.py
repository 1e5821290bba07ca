"""The one answer-generation path: media read -> processor -> batched, left-padded greedy generate -> decode.

Eval, demo scoring, `describe` and the batch engines (`inference.engines`: worker processes, accelerate shards,
Ray) all answer through it, in two stages that may run in different processes:

    prepare(processor, request, settings) -> Prepared     CPU: read media, chat template, processor (one item)
    generate_batch(model, processor, prepared, settings)  model: left-pad, one greedy generate per frame count, decode

A request that cannot be prepared (unreadable media, a decompression bomb, a prompt that does not fit) becomes a
`Prepared` with an `error`, and its result is `{"error": ...}`: one bad item never costs the others.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)


@dataclass
class GenerationSettings:
    """How answers are generated: frame policy, video token budget, prompt options and answer length.

    `None` means "the model / processor default" (8 uniformly sampled frames, no pooling)."""

    num_frames: int | None = None
    fps: float | None = None
    max_frames: int | None = None
    video_pooling: str | None = None
    video_pool_stride: int | None = None
    video_slowfast_every: int | None = None
    max_new_tokens: int = 32
    add_timestamps: bool = False
    add_system_prompt: bool = True

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}.")
        if self.num_frames is not None and self.fps is not None:
            raise ValueError("Give either num_frames (uniform sampling) or fps (with max_frames), not both.")

    def frame_policy(self, default_frames: int) -> dict:
        if self.fps is not None:
            return {"fps": self.fps, "max_frames": self.max_frames}
        return {"num_frames": self.num_frames or default_frames, "max_frames": self.max_frames}

    def pooling(self) -> dict:
        """Per-call budget overrides, as the processor and the model take them (unset ones left out)."""
        values = {"video_pooling": self.video_pooling, "video_pool_stride": self.video_pool_stride,
                  "video_slowfast_every": self.video_slowfast_every}
        return {k: v for k, v in values.items() if v is not None}

    def processor_pooling(self) -> dict:
        """The same overrides under the names `processor.video_seq_length` takes."""
        return {"pooling": self.video_pooling, "stride": self.video_pool_stride,
                "slowfast_every": self.video_slowfast_every}


@dataclass(frozen=True)
class Request:
    """One question about (at most) one video and one image. `video`: a path, URL, bytes or (F, H, W, 3) uint8
    frames (sampled with the settings' frame policy); `image`: a path, PIL image or (H, W, 3) array. `name` is what
    error messages call the item (default: the video / image path)."""

    text: str
    video: Any = None
    image: Any = None
    name: str | None = None  # what messages call the item

    def label(self) -> str:
        if self.name is not None:
            return self.name
        for source in (self.video, self.image):
            if isinstance(source, str):
                return source
        return "<in-memory media>"


@dataclass
class Prepared:
    """A request after the CPU stage: model inputs of one item (input_ids / attention_mask (1, L), pixel_values
    (I, 3, H, W), pixel_values_videos (1, F, 3, H, W)), or the error that stopped it."""

    inputs: dict | None = None
    num_frames: int | None = None
    video_tokens: int | None = None
    error: str | None = None


def build_prompt(processor, request: Request, add_system_prompt: bool = True) -> str:
    """The llava_v1 prompt: media placeholders (video first) on the user turn, then the question."""
    content = []
    if request.video is not None:
        content.append({"type": "video"})
    if request.image is not None:
        content.append({"type": "image"})
    content.append({"type": "text", "text": request.text})
    messages = [{"role": "user", "content": content}]
    return processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=False, add_system_prompt=add_system_prompt
    )


def read_media(request: Request, policy: dict):
    """(frames (F, H, W, 3) uint8 or None, metadata or None, image or None) of one request."""
    from ..models.videollava.media_io import load_image
    from ..models.videollava.video_io import load_video

    frames = metadata = image = None
    if request.video is not None:
        frames, metadata = load_video(request.video, **policy)
    if request.image is not None:
        image = load_image(request.image)  # paths, URLs, bytes, dataset cells, PIL (EXIF, 16-bit); arrays as they are
    return frames, metadata, image


def describe_error(request: Request, err: BaseException) -> str:
    """The error message of a failed item, naming the item when the message does not."""
    message = str(err) or type(err).__name__
    label = request.label()
    return message if label in message else f"{label}: {type(err).__name__}: {message}"


def prepare(processor, request: Request, settings: GenerationSettings) -> Prepared:
    """The CPU stage for one request; any failure (not only ValueError / OSError: Pillow's DecompressionBombError,
    MemoryError, ...) is caught here and returned as `Prepared(error=...)`."""
    try:
        return _prepare(processor, request, settings)
    except Exception as err:  # noqa: BLE001 - per-item isolation: the reason goes into the item's error row
        return Prepared(error=describe_error(request, err))


def _prepare(processor, request: Request, settings: GenerationSettings) -> Prepared:
    policy = settings.frame_policy(processor.video_processor.num_frames)
    frames, metadata, image = read_media(request, policy)
    prompt = build_prompt(processor, request, settings.add_system_prompt)
    if settings.add_timestamps and metadata is not None:
        prompt = processor.insert_timestamps([prompt], [metadata])[0]
    # The frames are already sampled: hand all of them to the processor (num_frames = their count).
    frame_kwargs = {"num_frames": int(frames.shape[0])} if frames is not None else {}
    encoding = processor(
        text=[prompt], videos=None if frames is None else [frames], images=None if image is None else [image],
        return_tensors="pt", **frame_kwargs, **(settings.pooling() if frames is not None else {}),
    )
    inputs = {key: encoding[key] for key in ("input_ids", "attention_mask", "pixel_values", "pixel_values_videos")
              if key in encoding}
    num_frames = None if frames is None else int(frames.shape[0])
    tokens = None if num_frames is None else processor.video_seq_length(num_frames, **settings.processor_pooling())
    return Prepared(inputs=inputs, num_frames=num_frames, video_tokens=tokens)


def frame_groups(frame_counts: Sequence[int | None]) -> list[list[int]]:
    """Positions of a batch grouped by frame count (videos of one generate call must stack); items without a video
    join the first group. Uniform sampling gives one group, i.e. one generate call per batch."""
    groups: dict[int | None, list[int]] = {}
    for i, count in enumerate(frame_counts):
        groups.setdefault(count, []).append(i)
    stray = groups.pop(None, [])
    ordered = list(groups.values())
    if not ordered:
        return [stray]
    ordered[0] = sorted(ordered[0] + stray)
    return ordered


def generate_batch(model, processor, prepared: Sequence[Prepared], settings: GenerationSettings) -> list[dict]:
    """The model stage: results in order, `{"prediction", "num_frames", "video_tokens"}` or `{"error"}`. A group
    whose generate call fails is retried item by item, so only the item at fault gets the error."""
    results: list[dict] = [{"error": p.error} for p in prepared]
    ready = [i for i, p in enumerate(prepared) if p.error is None]
    for group in frame_groups([prepared[i].num_frames for i in ready]):
        positions = [ready[g] for g in group]
        if positions:
            for i, result in zip(positions, _generate_or_isolate(model, processor, [prepared[i] for i in positions],
                                                                 settings)):
                results[i] = result
    return results


def _generate_or_isolate(model, processor, items: list[Prepared], settings: GenerationSettings) -> list[dict]:
    try:
        texts = _generate(model, processor, items, settings)
    except Exception as err:  # noqa: BLE001 - find the item at fault, keep the others
        if len(items) > 1:
            return [r for item in items for r in _generate_or_isolate(model, processor, [item], settings)]
        logger.warning("generation failed: %s", err)
        return [{"error": f"generation failed: {type(err).__name__}: {err}"}]
    return [{"prediction": text, "num_frames": item.num_frames, "video_tokens": item.video_tokens}
            for item, text in zip(items, texts)]


def pad_token_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def _generate(model, processor, items: Sequence[Prepared], settings: GenerationSettings) -> list[str]:
    """One left-padded batch and one greedy `generate` call for items whose videos share a frame count."""
    import torch

    from ..models.videollava.pipeline_video_text_to_text import collate_left_padded

    tokenizer = processor.tokenizer
    marked = [{**item.inputs, "input_text": None, "prompt_text": None} for item in items]
    batch = collate_left_padded(marked, pad_token_id(tokenizer))  # input_ids (B, L), pads on the left
    for key in ("input_text", "prompt_text"):
        batch.pop(key)
    batch = {k: v.to(model.device) for k, v in batch.items()}
    for key in ("pixel_values", "pixel_values_videos"):
        if key in batch:
            batch[key] = batch[key].to(model.dtype)
    extra = settings.pooling() if "pixel_values_videos" in batch else {}
    with torch.inference_mode():
        output = model.generate(
            **batch, **extra, max_new_tokens=settings.max_new_tokens, do_sample=False, num_beams=1,
            pad_token_id=pad_token_id(tokenizer),
        )
    new_tokens = output[:, batch["input_ids"].shape[1]:]  # (B, generated); left padding aligns the prompts' ends
    return [text.strip() for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]


def answer(model, processor, requests: Sequence[Request], settings: GenerationSettings) -> list[dict]:
    """Both stages in this process: results for `requests`, in order (see `generate_batch`)."""
    return generate_batch(model, processor, [prepare(processor, r, settings) for r in requests], settings)


__all__ = [
    "GenerationSettings",
    "Prepared",
    "Request",
    "answer",
    "build_prompt",
    "describe_error",
    "frame_groups",
    "generate_batch",
    "pad_token_id",
    "prepare",
    "read_media",
]
