"""Evaluation harness: run a Video-LLaVA model over a local video-QA dataset and score its answers.

Dataset (one record per question; JSON list, JSONL or parquet, read with `datasets`):

    {"id": "q1", "video": "clips/a.mp4", "question": "What is the man doing?", "answer": "ironing",
     "choices": ["cooking", "ironing", "running"], "question_type": "action"}

- `id` (or `question_id`): unique; the row number when absent.
- `video` / `video_path` and/or `image` / `image_path`: media paths, relative ones resolved against the media root
  (default: the data file's folder).
- `question`, `answer`: text. Records in the LLaVA conversation format (`"conversations": [{"from": "human",
  "value": "<video>\\n..."}, {"from": "gpt", "value": "..."}]`, as written by `videollava_hf.data.synthetic`) are
  read too: their first human / gpt turns become the question (placeholders removed) and the answer.
- `choices` (optional list): makes the question multiple-choice. `answer` is then a letter ("B"), a 0-based index,
  or the text of one choice.
- `question_type` (optional): metrics are also broken down by it.

`evaluate()` generates greedily in batches (left padding, one `generate` call per batch), appends each batch's
predictions to `predictions.jsonl` and flushes it, so an interrupted run resumes where it stopped (ids already
predicted are skipped). It then scores every prediction and writes `metrics.json`:

- multiple choice: accuracy of the option letter parsed from the answer (`parse_choice`: "B", "(B)", "B.",
  "The answer is B", or the text of an option);
- open-ended: exact match and normalised match (`normalize_answer`: lowercase, no punctuation or articles, number
  words as digits), plus `contains` (the normalised reference appears in the normalised prediction);
- optionally an LLM judge following the Video-ChatGPT protocol of MSVD/MSRVTT/TGIF/ActivityNet-QA (a yes/no verdict
  and a 0-5 score per open-ended answer; accuracy = fraction of "yes", plus the mean score): any Python callable
  `judge(question, answer, prediction) -> {"pred": "yes" | "no", "score": 0..5}` or `OpenAIJudge` for an
  OpenAI-compatible chat-completions endpoint. Verdicts are cached in `judgements.jsonl` (resumable too).
"""

from __future__ import annotations

import ast
import contextlib
import json
import math
import os
import re
import string
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

PREDICTIONS_FILE = "predictions.jsonl"
JUDGEMENTS_FILE = "judgements.jsonl"
METRICS_FILE = "metrics.json"
SETTINGS_FILE = "eval_settings.json"
LETTERS = string.ascii_uppercase
# The instruction appended to multiple-choice questions (our wording; the options are listed as "(A) text").
CHOICE_INSTRUCTION = "Reply with only the letter of the correct option."
_DATA_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet"}
_PLACEHOLDERS = re.compile(r"<(?:video|image)>\s*")

JudgeFn = Callable[[str, str, str], dict]


# ------------------------------------------------------------------------------------------------------------
# Dataset
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalSample:
    """One question. `video` / `image` are resolved paths; `answer_index` is set for multiple-choice questions."""

    id: str
    question: str
    answer: str
    choices: tuple[str, ...] | None = None
    answer_index: int | None = None
    question_type: str | None = None
    video: str | None = None
    image: str | None = None


def load_eval_dataset(
    data_file: str | os.PathLike,
    media_root: str | os.PathLike | None = None,
    *,
    limit: int | None = None,
    cache_dir: str | None = None,
    check_media: bool = True,
) -> list[EvalSample]:
    """Read `data_file` (.json / .jsonl / .parquet) with `datasets` into `EvalSample`s (see the module docstring)."""
    import datasets

    path = Path(data_file)
    builder = _DATA_BUILDERS.get(path.suffix.lower())
    if builder is None:
        raise ValueError(
            f"Cannot read {path}: expected a .json, .jsonl or .parquet file, got {path.suffix or 'no extension'!r}."
        )
    if not path.is_file():
        raise FileNotFoundError(f"Dataset file {path} does not exist.")
    table = datasets.load_dataset(builder, data_files=str(path), split="train", cache_dir=cache_dir)
    root = Path(media_root) if media_root is not None else path.parent
    rows = table if limit is None else table.select(range(min(limit, len(table))))
    samples = [sample_from_record(row, i, root) for i, row in enumerate(rows)]
    _check_unique_ids(samples, path)
    if check_media:
        _check_media_exist(samples, root)
    return samples


def sample_from_record(record: dict, index: int, media_root: Path) -> EvalSample:
    """Normalise one dataset row (flat QA columns or LLaVA `conversations`) into an `EvalSample`."""
    where = f"record {index}"
    sample_id = _first_present(record, ("id", "question_id"))
    sample_id = str(index) if sample_id is None else str(sample_id)
    question, answer = record.get("question"), record.get("answer")
    if question is None and record.get("conversations"):
        question, answer_from_turns = _first_exchange(record["conversations"], f"{where} (id {sample_id})")
        answer = answer if answer is not None else answer_from_turns
    if not isinstance(question, str) or answer is None:
        raise ValueError(
            f"{where} (id {sample_id}) needs a text `question` and an `answer` (or LLaVA `conversations`); it has "
            f"columns {sorted(k for k, v in record.items() if v is not None)}."
        )
    question = _PLACEHOLDERS.sub("", question).strip()
    video = _first_present(record, ("video", "video_path"))
    image = _first_present(record, ("image", "image_path"))
    if video is None and image is None:
        raise ValueError(f"{where} (id {sample_id}) has no `video` (or `video_path`) / `image` (or `image_path`).")
    choices = record.get("choices")
    answer_index = None
    if choices is not None:
        choices = _check_choices(choices, f"{where} (id {sample_id})")
        try:
            answer_index = resolve_choice_answer(answer, choices)
        except ValueError as err:
            raise ValueError(f"{where} (id {sample_id}): {err}") from err
    elif not isinstance(answer, str):
        raise ValueError(f"{where} (id {sample_id}): an open-ended `answer` must be text, got {answer!r}.")
    question_type = record.get("question_type")
    return EvalSample(
        id=sample_id,
        question=question,
        answer=str(answer),
        choices=choices,
        answer_index=answer_index,
        question_type=None if question_type is None else str(question_type),
        video=_resolve(video, media_root),
        image=_resolve(image, media_root),
    )


def _first_present(record: dict, keys: Sequence[str]) -> Any:
    for key in keys:
        if record.get(key) is not None:
            return record[key]
    return None


def _first_exchange(turns: Sequence[dict], where: str) -> tuple[str, str]:
    """The first human turn and the gpt turn that answers it."""
    for i, turn in enumerate(turns[:-1]):
        nxt = turns[i + 1]
        if turn.get("from") == "human" and nxt.get("from") == "gpt":
            return str(turn.get("value", "")), str(nxt.get("value", ""))
    raise ValueError(f"{where}: `conversations` has no human turn followed by a gpt turn.")


def _check_choices(choices: Any, where: str) -> tuple[str, ...]:
    if not isinstance(choices, (list, tuple)) or not 2 <= len(choices) <= len(LETTERS):
        raise ValueError(f"{where}: `choices` must be a list of 2 to {len(LETTERS)} options, got {choices!r}.")
    return tuple(str(c) for c in choices)


def resolve_choice_answer(answer: Any, choices: Sequence[str]) -> int:
    """The 0-based index of a multiple-choice `answer`: a letter ("B", "(b)"), an int index, or an option's text."""
    if isinstance(answer, bool):
        raise ValueError(f"A multiple-choice answer must be a letter, an index or an option's text, got {answer!r}.")
    if isinstance(answer, int):
        if 0 <= answer < len(choices):
            return answer
        raise ValueError(f"Answer index {answer} is out of range for {len(choices)} choices (0-based).")
    text = str(answer).strip()
    letter = re.fullmatch(r"\(?([A-Za-z])\)?\.?", text)
    if letter and LETTERS.index(letter.group(1).upper()) < len(choices):
        return LETTERS.index(letter.group(1).upper())
    normalized = [normalize_answer(c) for c in choices]
    if normalize_answer(text) in normalized:
        return normalized.index(normalize_answer(text))
    raise ValueError(
        f"Answer {answer!r} is neither a letter A-{LETTERS[len(choices) - 1]}, an index, nor one of the choices "
        f"{list(choices)}."
    )


def _resolve(path: Any, root: Path) -> str | None:
    if path is None:
        return None
    candidate = Path(str(path)).expanduser()
    return str(candidate if candidate.is_absolute() else root / candidate)


def _check_unique_ids(samples: Sequence[EvalSample], source: Path) -> None:
    seen: set[str] = set()
    duplicates = sorted({s.id for s in samples if s.id in seen or seen.add(s.id)})
    if duplicates:
        raise ValueError(
            f"{source} repeats the ids {duplicates[:5]}; every question needs its own id (resuming relies on it)."
        )


def _check_media_exist(samples: Sequence[EvalSample], root: Path) -> None:
    missing = [p for s in samples for p in (s.video, s.image) if p is not None and not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} media file(s) not found, e.g. {missing[:3]}. Relative paths are resolved against the "
            f"media root {root}; pass the folder that holds them (--media-root)."
        )


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
    from PIL import Image

    from .video_io import load_video

    frames = metadata = image = None
    if sample.video is not None:
        frames, metadata = load_video(sample.video, **policy)
    if sample.image is not None:
        with Image.open(sample.image) as opened:
            image = opened.convert("RGB")
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


# ------------------------------------------------------------------------------------------------------------
# Answer parsing and metrics
# ------------------------------------------------------------------------------------------------------------

_NUMBER_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50,
    "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
}
_TENS = {w for w, n in _NUMBER_WORDS.items() if n >= 20}
_ARTICLES = {"a", "an", "the"}
_PUNCTUATION = re.compile(r"[^\w\s]|_")


def normalize_answer(text: str) -> str:
    """Lowercase; drop apostrophes, other punctuation (as spaces) and articles; number words as digits
    ("twenty-one" -> "21"); single spaces. "The answer: Three." -> "answer 3"."""
    text = str(text).lower().replace("'", "").replace("\u2019", "")
    out: list[str] = []
    after_tens = False  # the previous word was "twenty" ... "ninety", so a unit word adds to it
    for word in _PUNCTUATION.sub(" ", text).split():
        if word in _ARTICLES:
            after_tens = False
            continue
        value = _NUMBER_WORDS.get(word)
        if value is not None and 0 < value < 10 and after_tens:
            out[-1] = str(int(out[-1]) + value)
            after_tens = False
            continue
        after_tens = word in _TENS
        out.append(str(value) if value is not None else word)
    return " ".join(out)


def parse_choice(prediction: str, choices: Sequence[str]) -> int | None:
    """The 0-based option index a free-text `prediction` picks among `choices`, or None when it names none.

    Tried in order: the whole reply is a letter ("B", "(b)", "B."); the reply starts with a label ("B. text",
    "(B) text"); an explicit statement ("The answer is B", "option (C)"); exactly one parenthesised letter; the text
    of exactly one option; exactly one standalone capital letter (not the article "A" or the pronoun "I")."""
    valid = LETTERS[: len(choices)]
    text = str(prediction).strip()
    if not text:
        return None
    whole = re.fullmatch(r"[(\[]?\s*([A-Za-z])\s*[)\]]?\s*[.:]?", text)
    if whole and whole.group(1).upper() in valid:
        return valid.index(whole.group(1).upper())
    statement = r"(?:\s+(?i:is|would\s+be|should\s+be))?\s*:?\s*[(\[]?([A-Z])\b"
    for pattern in (
        r"^[(\[]?([A-Z])(?:[)\]]|[.:])(?:\s|$)",  # leading label
        r"(?i:\banswer\b)" + statement,  # "The answer is B" wins over a mention of another option
        r"(?i:\b(?:option|choice)\b)" + statement,
    ):
        found = re.search(pattern, text)
        if found and found.group(1) in valid:
            return valid.index(found.group(1))
    picked = _single({m for m in re.findall(r"[(\[]([A-Z])[)\]]", text) if m in valid})
    if picked is not None:
        return valid.index(picked)
    by_text = _option_by_text(text, choices)
    if by_text is not None:
        return by_text
    # "A" / "I" followed by a lowercase word read as English ("A red circle", "I think"), not as option letters.
    lone = {m.group(1) for m in re.finditer(r"\b([A-Z])\b(?!\s+[a-z])", text) if m.group(1) in valid}
    lone |= {m.group(1) for m in re.finditer(r"\b([B-HJ-Z])\b", text) if m.group(1) in valid}
    picked = _single(lone)
    return None if picked is None else valid.index(picked)


def _single(items: set[str]) -> str | None:
    return next(iter(items)) if len(items) == 1 else None


def _option_by_text(text: str, choices: Sequence[str]) -> int | None:
    """The option whose normalised text equals the reply, else the only one (ignoring options contained in a longer
    matching option) whose text appears in the reply as whole words."""
    reply = normalize_answer(text)
    options = [normalize_answer(c) for c in choices]
    if reply in options and options.count(reply) == 1:
        return options.index(reply)
    padded = f" {reply} "
    hits = [i for i, o in enumerate(options) if o and f" {o} " in padded]
    hits = [i for i in hits if not any(j != i and options[i] in options[j] for j in hits)]
    return hits[0] if len(hits) == 1 else None


def score_record(record: dict) -> dict:
    """Score one prediction record: multiple choice -> {"kind", "choice", "correct"}; open-ended ->
    {"kind", "exact", "normalized", "contains", "correct"} (correct = normalised match)."""
    prediction = str(record.get("prediction", ""))
    if record.get("choices"):
        choice = parse_choice(prediction, record["choices"])
        return {"kind": "multiple_choice", "choice": choice, "correct": choice == record["answer_index"]}
    answer = normalize_answer(record["answer"])
    reply = normalize_answer(prediction)
    normalized = reply == answer
    return {
        "kind": "open_ended",
        "exact": prediction.strip() == str(record["answer"]).strip(),
        "normalized": normalized,
        "contains": bool(answer) and f" {answer} " in f" {reply} ",
        "correct": normalized,
    }


def compute_metrics(records: Sequence[dict], judgements: dict[str, dict] | None = None) -> dict:
    """Aggregate metrics over prediction records, overall and per `question_type` (see `_aggregate`)."""
    items = []
    for record in records:
        item = {"question_type": record.get("question_type"), **score_record(record)}
        verdict = (judgements or {}).get(record["id"])
        if verdict is not None and item["kind"] == "open_ended":
            item["judge_pred"], item["judge_score"] = verdict.get("pred"), verdict.get("score")
        items.append(item)
    with_judge = judgements is not None
    metrics = _aggregate(items, with_judge)
    types = sorted({i["question_type"] for i in items if i["question_type"] is not None})
    metrics["per_question_type"] = {
        t: _aggregate([i for i in items if i["question_type"] == t], with_judge) for t in types
    }
    frames = [r["num_frames"] for r in records if r.get("num_frames") is not None]
    tokens = [r["video_tokens"] for r in records if r.get("video_tokens") is not None]
    metrics["media_errors"] = sum(1 for r in records if r.get("error"))
    metrics["mean_num_frames"] = _mean(frames)
    metrics["mean_video_tokens"] = _mean(tokens)
    return metrics


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _aggregate(items: Sequence[dict], with_judge: bool) -> dict:
    """count and accuracy (multiple choice: parsed letter right; open-ended: normalised match), then per kind:
    multiple_choice {count, accuracy, unparsed}, open_ended {count, exact_match, normalized_match, contains}, and
    judge {judged, yes, no, failed, accuracy = yes / (yes + no), average_score} when a judge ran."""
    out: dict[str, Any] = {"count": len(items), "accuracy": _mean([float(i["correct"]) for i in items])}
    mc = [i for i in items if i["kind"] == "multiple_choice"]
    if mc:
        out["multiple_choice"] = {
            "count": len(mc),
            "accuracy": _mean([float(i["correct"]) for i in mc]),
            "unparsed": sum(i["choice"] is None for i in mc),
        }
    oe = [i for i in items if i["kind"] == "open_ended"]
    if oe:
        out["open_ended"] = {
            "count": len(oe),
            "exact_match": _mean([float(i["exact"]) for i in oe]),
            "normalized_match": _mean([float(i["normalized"]) for i in oe]),
            "contains": _mean([float(i["contains"]) for i in oe]),
        }
    if with_judge and oe:
        yes = sum(i.get("judge_pred") == "yes" for i in oe)
        no = sum(i.get("judge_pred") == "no" for i in oe)
        scores = [float(i["judge_score"]) for i in oe if i.get("judge_pred") in ("yes", "no")]
        out["judge"] = {
            "judged": yes + no,
            "yes": yes,
            "no": no,
            "failed": len(oe) - yes - no,
            "accuracy": yes / (yes + no) if yes + no else None,
            "average_score": _mean(scores),
        }
    return out


# ------------------------------------------------------------------------------------------------------------
# Judge (Video-ChatGPT protocol)
# ------------------------------------------------------------------------------------------------------------
# The protocol of Video-ChatGPT's zero-shot QA evaluation, which Video-LLaVA reports for MSVD-, MSRVTT-, TGIF- and
# ActivityNet-QA: a chat model sees the question, the reference answer and the prediction, and replies with a
# Python-dict string {'pred': 'yes' | 'no', 'score': 0..5}. Accuracy is the share of "yes" among the judged answers
# and the score is averaged. The wording below is ours.

JUDGE_SYSTEM_PROMPT = (
    "You grade answers to questions about videos. For each question you get a reference answer and a predicted "
    "answer, and you decide whether the prediction means the same as the reference.\n"
    "Guidelines:\n"
    "- Judge meaning, not wording: synonyms and paraphrases count as matches.\n"
    "- A prediction that contradicts the reference or leaves out what it asks for does not match.\n"
    "- Rate how closely the meanings agree."
)
JUDGE_USER_TEMPLATE = (
    "Question about a video: {question}\n"
    "Reference answer: {answer}\n"
    "Predicted answer: {prediction}\n\n"
    "Give your verdict as a Python dictionary and nothing else. It has two keys: 'pred', the string 'yes' when the "
    "prediction matches the reference and 'no' otherwise, and 'score', an integer from 0 (no match at all) to 5 "
    "(complete match). Do not add any explanation. Example of a valid reply: {{'pred': 'no', 'score': 1}}"
)


class JudgeError(RuntimeError):
    """The judge endpoint could not be reached or answered with an error (the run stops; rerun to resume)."""


class JudgeParseError(ValueError):
    """A judge reply that is not a {'pred': 'yes'|'no', 'score': 0..5} verdict (recorded as a failed judgement)."""


def judge_messages(question: str, answer: str, prediction: str) -> list[dict]:
    """The chat-completions messages for one verdict."""
    user = JUDGE_USER_TEMPLATE.format(question=question, answer=answer, prediction=prediction)
    return [{"role": "system", "content": JUDGE_SYSTEM_PROMPT}, {"role": "user", "content": user}]


def parse_judge_reply(reply: str) -> dict:
    """{'pred': 'yes'|'no', 'score': float in [0, 5]} from a judge's text reply.

    Accepts a Python dict literal or JSON (also inside code fences or surrounded by prose), and falls back to
    reading `pred: yes` / `score: 4` pairs; raises `JudgeParseError` otherwise."""
    text = str(reply).strip()
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        snippet = text[start : end + 1]
        for parse in (ast.literal_eval, json.loads):
            try:
                value = parse(snippet)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                continue
            if isinstance(value, dict):
                return check_judgement(value)
    pred = re.search(r"""['"]?pred['"]?\s*[:=]\s*['"]?\s*(yes|no)\b""", text, re.I)
    score = re.search(r"""['"]?score['"]?\s*[:=]\s*['"]?\s*(-?\d+(?:\.\d+)?)""", text, re.I)
    if pred and score:
        return check_judgement({"pred": pred.group(1), "score": score.group(1)})
    raise JudgeParseError(f"Judge reply is not a {{'pred': 'yes'|'no', 'score': 0-5}} verdict: {text[:200]!r}")


def check_judgement(value: Any) -> dict:
    """Validate a judge's verdict (a dict, or a reply string) into {'pred': 'yes'|'no', 'score': float}."""
    if isinstance(value, str):
        return parse_judge_reply(value)
    if not isinstance(value, dict) or "pred" not in value or "score" not in value:
        raise JudgeParseError(f"A verdict must be a dict with 'pred' and 'score', got {value!r}.")
    pred = value["pred"]
    if isinstance(pred, bool):
        pred = "yes" if pred else "no"
    words = re.findall(r"[a-z]+", str(pred).lower())
    if not words or words[0] not in ("yes", "no"):
        raise JudgeParseError(f"'pred' must be 'yes' or 'no', got {value['pred']!r}.")
    try:
        score = float(value["score"])
    except (TypeError, ValueError) as err:
        raise JudgeParseError(f"'score' must be a number from 0 to 5, got {value['score']!r}.") from err
    if not 0.0 <= score <= 5.0 or math.isnan(score):
        raise JudgeParseError(f"'score' must be from 0 to 5, got {score}.")
    return {"pred": words[0], "score": score}


class OpenAIJudge:
    """A judge behind an OpenAI-compatible chat-completions endpoint (urllib only; no SDK).

    Args:
        url: the endpoint, e.g. "https://api.openai.com/v1/chat/completions"; a base such as ".../v1" gets
            "/chat/completions" appended.
        model: the model name sent in the request (Video-ChatGPT used "gpt-3.5-turbo").
        api_key_env: name of the environment variable holding the API key (sent as a Bearer token); None for
            endpoints without authentication. The key itself is never written to any output.
        timeout: seconds per request. max_retries: extra attempts after a transient failure (connection error,
            HTTP 429 / 5xx) or an unparseable reply; retry_wait: seconds before the first retry, doubled each time.
    """

    def __init__(self, url: str, model: str, api_key_env: str | None = None, *, timeout: float = 60.0,
                 max_retries: int = 3, retry_wait: float = 2.0, temperature: float = 0.0):
        if not re.match(r"https?://", url):
            raise ValueError(f"The judge URL must start with http:// or https://, got {url!r}.")
        if not model:
            raise ValueError("The judge needs a model name (--judge-model), e.g. gpt-3.5-turbo.")
        self.url = url if url.rstrip("/").endswith("/chat/completions") else url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key = None
        if api_key_env:
            self.api_key = os.environ.get(api_key_env)
            if not self.api_key:
                raise ValueError(
                    f"The environment variable {api_key_env} (named as the judge's API key) is not set or empty; "
                    f"export it, or leave out the key option for an endpoint without authentication."
                )
        self.timeout, self.max_retries = timeout, max_retries
        self.retry_wait, self.temperature = retry_wait, temperature

    @property
    def name(self) -> str:
        return f"openai:{self.model}@{self.url}"

    def __call__(self, question: str, answer: str, prediction: str) -> dict:
        messages = judge_messages(question, answer, prediction)
        problem = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.retry_wait * 2 ** (attempt - 1))
            try:
                return parse_judge_reply(self._complete(messages))
            except (JudgeParseError, _TransientError) as err:
                problem = err
        if isinstance(problem, JudgeParseError):
            raise problem
        raise JudgeError(f"The judge at {self.url} failed {self.max_retries + 1} times; last error: {problem}")

    def _complete(self, messages: list[dict]) -> str:
        body = json.dumps({"model": self.model, "messages": messages, "temperature": self.temperature}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as err:
            detail = err.read()[:300].decode("utf-8", "replace")
            if err.code == 429 or err.code >= 500:
                raise _TransientError(f"HTTP {err.code}: {detail}") from err
            raise JudgeError(f"The judge at {self.url} refused the request: HTTP {err.code}: {detail}") from err
        except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
            raise _TransientError(f"{type(err).__name__}: {err}") from err
        try:
            return json.loads(payload)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as err:
            raise JudgeError(
                f"The judge at {self.url} did not return a chat completion (choices[0].message.content): "
                f"{payload[:300]!r}"
            ) from err


class _TransientError(Exception):
    """A failure worth retrying (network, rate limit, server error)."""


def judge_name(judge: JudgeFn) -> str:
    """How a judge is identified in `judgements.jsonl` (cached verdicts of another judge are not reused)."""
    return getattr(judge, "name", None) or getattr(judge, "__qualname__", None) or type(judge).__name__


def run_judge(judge: JudgeFn, records: Sequence[dict], path: str | os.PathLike, progress: bool = False) -> dict:
    """Verdicts for the open-ended records, by id. Cached ones (same judge, same prediction) are read from `path`;
    new ones are appended and flushed one by one. A reply that cannot be parsed is recorded as failed (pred None)."""
    from tqdm import tqdm

    name = judge_name(judge)
    path = Path(path)
    verdicts = {r["id"]: r for r in read_jsonl(path) if r.get("judge") == name}
    # Open-ended answers only; an answer whose media failed is not judged (it counts as failed); a cached verdict is
    # reused only for the same prediction (a retried question gets a new answer).
    todo = [r for r in records if not r.get("choices") and not r.get("error")
            and verdicts.get(r["id"], {}).get("prediction") != r["prediction"]]
    if not todo:
        return verdicts
    bar = tqdm(total=len(todo), desc="judge", unit="q", disable=not progress, file=sys.stderr)
    with _open_for_append(path) as sink, bar:
        for record in todo:
            line = {"id": record["id"], "judge": name, "prediction": record["prediction"]}
            try:
                line.update(check_judgement(judge(record["question"], record["answer"], record["prediction"])))
            except JudgeParseError as err:
                line.update({"pred": None, "score": None, "error": str(err)})
            sink.write(json.dumps(line) + "\n")
            sink.flush()
            verdicts[record["id"]] = line
            bar.update(1)
    return verdicts


# ------------------------------------------------------------------------------------------------------------
# Files and the driver
# ------------------------------------------------------------------------------------------------------------


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Records of a JSONL file ([] when missing). A partial last line (a run killed mid-write) is ignored; a broken
    line elsewhere is an error."""
    path = Path(path)
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").split("\n")
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            if number == len(lines):  # no newline after it: cut short while being written
                continue
            raise ValueError(f"{path}, line {number} is not valid JSON ({err}); fix or delete the line.") from err
    return records


@contextlib.contextmanager
def _open_for_append(path: Path) -> Iterator[TextIO]:
    """Open a JSONL file for appending, first dropping a partial last line so new records start on their own."""
    if path.is_file():
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            with path.open("r+b") as handle:
                handle.truncate(data.rfind(b"\n") + 1)
    with path.open("a", encoding="utf-8") as handle:
        yield handle


def _batches(items: Sequence, size: int) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _record(sample: EvalSample, result: dict) -> dict:
    return {
        "id": sample.id,
        "question_type": sample.question_type,
        "question": sample.question,
        "answer": sample.answer,
        "choices": None if sample.choices is None else list(sample.choices),
        "answer_index": sample.answer_index,
        "video": sample.video,
        "image": sample.image,
        **result,
    }


def _check_settings(out: Path, settings: dict, overwrite: bool) -> None:
    """Refuse to mix predictions made with different settings in one output folder."""
    path = out / SETTINGS_FILE
    if overwrite:
        for name in (PREDICTIONS_FILE, JUDGEMENTS_FILE, METRICS_FILE, SETTINGS_FILE):
            (out / name).unlink(missing_ok=True)
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved != settings:
            changed = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
            before = {k: saved.get(k) for k in changed}
            now = {k: settings.get(k) for k in changed}
            raise ValueError(
                f"{out} holds predictions made with other settings ({before} then, {now} now). Use another output "
                "folder, or overwrite=True (--overwrite) to start over."
            )
    else:
        path.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def evaluate(
    model,
    processor,
    data: str | os.PathLike | Sequence[EvalSample],
    out_dir: str | os.PathLike,
    *,
    media_root: str | os.PathLike | None = None,
    settings: GenerationSettings | None = None,
    batch_size: int = 1,
    judge: JudgeFn | None = None,
    limit: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
    cache_dir: str | None = None,
) -> dict:
    """Predict (resumably) and score; writes predictions.jsonl, judgements.jsonl (with a judge) and metrics.json
    under `out_dir` and returns the metrics. `data`: a dataset file or a list of `EvalSample`s."""
    from tqdm import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    settings = settings or GenerationSettings()
    if isinstance(data, (str, os.PathLike)):
        samples = load_eval_dataset(data, media_root, limit=limit, cache_dir=cache_dir)
    else:
        samples = list(data)[:limit] if limit is not None else list(data)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    run_settings = {"model": str(getattr(model, "name_or_path", "") or ""), **asdict(settings)}
    _check_settings(out, run_settings, overwrite)

    pred_path = out / PREDICTIONS_FILE
    done = {r["id"]: r for r in read_jsonl(pred_path)}  # a later line for an id (a retried error) wins
    pending = [s for s in samples if s.id not in done or "error" in done[s.id]]
    started = time.perf_counter()
    bar = tqdm(total=len(samples), initial=len(samples) - len(pending), desc="eval", unit="q", disable=not progress,
               file=sys.stderr)
    with _open_for_append(pred_path) as sink, bar:
        for batch in _batches(pending, batch_size):
            for sample, result in zip(batch, predict_batch(model, processor, batch, settings)):
                done[sample.id] = _record(sample, result)
                sink.write(json.dumps(done[sample.id]) + "\n")
            sink.flush()  # a killed run keeps every finished batch
            bar.update(len(batch))
    elapsed = time.perf_counter() - started

    records = [done[s.id] for s in samples]
    judgements = run_judge(judge, records, out / JUDGEMENTS_FILE, progress) if judge is not None else None
    metrics = compute_metrics(records, judgements)
    metrics["settings"] = {**run_settings, "batch_size": batch_size,
                           "judge": None if judge is None else judge_name(judge)}
    metrics["timing"] = {
        "generated_this_run": len(pending),
        "seconds": elapsed,
        "seconds_per_sample": elapsed / len(pending) if pending else None,
    }
    tmp = out / (METRICS_FILE + ".tmp")
    tmp.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    tmp.replace(out / METRICS_FILE)
    return metrics


__all__ = [
    "CHOICE_INSTRUCTION",
    "EvalSample",
    "GenerationSettings",
    "JUDGE_SYSTEM_PROMPT",
    "JUDGE_USER_TEMPLATE",
    "JudgeError",
    "JudgeParseError",
    "OpenAIJudge",
    "build_prompt",
    "check_judgement",
    "compute_metrics",
    "evaluate",
    "judge_messages",
    "judge_name",
    "load_eval_dataset",
    "normalize_answer",
    "parse_choice",
    "parse_judge_reply",
    "predict_batch",
    "question_text",
    "read_jsonl",
    "resolve_choice_answer",
    "run_judge",
    "sample_from_record",
    "score_record",
]
