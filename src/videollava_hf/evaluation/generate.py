"""Answer generation for evaluation: each `EvalSample` becomes a `Request` of the one answer-generation path
(`videollava_hf.inference.generate`); this module only adds the question wording (multiple-choice options)."""

from __future__ import annotations

from collections.abc import Sequence

from ..inference.generate import GenerationSettings, Request, answer, frame_groups
from ..inference.generate import build_prompt as build_request_prompt
from .data import CHOICE_INSTRUCTION, EvalSample, LETTERS

_frame_groups = frame_groups  # the old private name, kept for callers that imported it


def question_text(sample: EvalSample) -> str:
    """The question as the model sees it; multiple-choice questions list their options as "(A) text"."""
    if sample.choices is None:
        return sample.question
    options = "\n".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(sample.choices))
    return f"{sample.question}\n{options}\n{CHOICE_INSTRUCTION}"


def request_for(sample: EvalSample) -> Request:
    return Request(text=question_text(sample), video=sample.video_source, image=sample.image_source,
                   name=sample.video or sample.image)


def build_prompt(processor, sample: EvalSample, add_system_prompt: bool = True) -> str:
    """The llava_v1 prompt for `sample`: media placeholders (video first) on the user turn, then the question."""
    return build_request_prompt(processor, request_for(sample), add_system_prompt)


def as_prediction(result: dict) -> dict:
    """A generation result as the fields of a predictions.jsonl record; a failed item keeps its error and gets no
    prediction (it is reported as a media error and never scored; a resumed run retries it)."""
    if "error" in result:
        return {"prediction": None, "num_frames": None, "video_tokens": None, "error": result["error"]}
    return result


def predict_batch(model, processor, samples: Sequence[EvalSample], settings: GenerationSettings) -> list[dict]:
    """Greedy answers for `samples`: [{"prediction", "num_frames", "video_tokens"}] or, for a sample that could not
    be answered, {"prediction": None, ..., "error": message}; in order."""
    return [as_prediction(r) for r in answer(model, processor, [request_for(s) for s in samples], settings)]


__all__ = [
    "GenerationSettings",
    "as_prediction",
    "build_prompt",
    "predict_batch",
    "question_text",
    "request_for",
]
