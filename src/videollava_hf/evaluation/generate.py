"""Answer generation for evaluation: batched, greedy by default, media read per sample."""

from __future__ import annotations


from collections.abc import Sequence
from dataclasses import dataclass

from .data import CHOICE_INSTRUCTION, EvalSample, LETTERS



# ------------------------------------------------------------------------------------------------------------
# Generation
# ------------------------------------------------------------------------------------------------------------


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


def question_text(sample: EvalSample) -> str:
    """The question as the model sees it; multiple-choice questions list their options as "(A) text"."""
    if sample.choices is None:
        return sample.question
    options = "\n".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(sample.choices))
    return f"{sample.question}\n{options}\n{CHOICE_INSTRUCTION}"


def build_prompt(processor, sample: EvalSample, add_system_prompt: bool = True) -> str:
    """The llava_v1 prompt for `sample`: media placeholders (video first) on the user turn, then the question."""
    content = []
    if sample.video is not None:
        content.append({"type": "video"})
    if sample.image is not None:
        content.append({"type": "image"})
    content.append({"type": "text", "text": question_text(sample)})
    messages = [{"role": "user", "content": content}]
    return processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=False, add_system_prompt=add_system_prompt
    )


def _read_media(sample: EvalSample, policy: dict):
    """(frames (F, H, W, 3) uint8 or None, metadata or None, PIL image or None) of one sample."""
    from ..models.videollava.media_io import load_image
    from ..models.videollava.video_io import load_video

    frames = metadata = image = None
    if sample.video is not None:
        frames, metadata = load_video(sample.video_source, **policy)
    if sample.image is not None:
        image = load_image(sample.image_source)
    return frames, metadata, image


def _frame_groups(frame_counts: Sequence[int | None]) -> list[list[int]]:
    """Positions of a batch grouped by frame count (videos of one generate call must stack); samples without a
    video join the first group. Uniform sampling gives one group, i.e. one generate call per batch."""
    groups: dict[int | None, list[int]] = {}
    for i, count in enumerate(frame_counts):
        groups.setdefault(count, []).append(i)
    stray = groups.pop(None, [])
    ordered = list(groups.values())
    if not ordered:
        return [stray]
    ordered[0] = sorted(ordered[0] + stray)
    return ordered


def predict_batch(model, processor, samples: Sequence[EvalSample], settings: GenerationSettings) -> list[dict]:
    """Greedy answers for `samples`: [{"prediction", "num_frames", "video_tokens"}], in order. A sample whose media
    cannot be read gets {"prediction": "", "error": message} (scored as wrong; retried by a resumed run)."""
    policy = settings.frame_policy(processor.video_processor.num_frames)
    results: list[dict] = [{} for _ in samples]
    media: dict[int, tuple] = {}
    for i, sample in enumerate(samples):
        try:
            media[i] = _read_media(sample, policy)
        except (ValueError, OSError) as err:  # VideoDecodeError is a ValueError; Pillow raises OSError
            results[i] = {"prediction": "", "num_frames": None, "video_tokens": None, "error": str(err)}
    readable = sorted(media)
    counts = [None if media[i][0] is None else int(media[i][0].shape[0]) for i in readable]
    for group in _frame_groups(counts):
        positions = [readable[g] for g in group]
        if not positions:
            continue
        answers = _generate(model, processor, [samples[i] for i in positions], [media[i] for i in positions],
                            settings)
        for i, text in zip(positions, answers):
            frames = None if media[i][0] is None else int(media[i][0].shape[0])
            tokens = None if frames is None else processor.video_seq_length(frames, **_processor_pooling(settings))
            results[i] = {"prediction": text, "num_frames": frames, "video_tokens": tokens}
    return results


def _processor_pooling(settings: GenerationSettings) -> dict:
    return {"pooling": settings.video_pooling, "stride": settings.video_pool_stride,
            "slowfast_every": settings.video_slowfast_every}


def _generate(model, processor, samples, media, settings: GenerationSettings) -> list[str]:
    """One left-padded processor call and one greedy `generate` call for samples whose videos share a frame count."""
    import torch

    prompts = [build_prompt(processor, s, settings.add_system_prompt) for s in samples]
    videos = [frames for frames, _, _ in media if frames is not None]
    images = [image for _, _, image in media if image is not None]
    if settings.add_timestamps and videos:
        prompts = processor.insert_timestamps(prompts, [meta for _, meta, _ in media if meta is not None])
    # The frames are already sampled: hand all of them to the processor (num_frames = their count).
    frame_kwargs = {"num_frames": videos[0].shape[0]} if videos else {}
    inputs = processor(
        text=prompts, videos=videos or None, images=images or None, padding=True, padding_side="left",
        return_tensors="pt", **frame_kwargs, **settings.pooling(),
    )
    inputs = inputs.to(model.device)
    for key in ("pixel_values", "pixel_values_videos"):
        if key in inputs:
            inputs[key] = inputs[key].to(model.dtype)
    tokenizer = processor.tokenizer
    with torch.inference_mode():
        output = model.generate(
            **inputs, max_new_tokens=settings.max_new_tokens, do_sample=False, num_beams=1,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        )
    new_tokens = output[:, inputs["input_ids"].shape[1]:]  # (B, generated); left padding aligns the prompts' ends
    return [text.strip() for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]


__all__ = [
    "GenerationSettings",
    "build_prompt",
    "predict_batch",
    "question_text",
]
