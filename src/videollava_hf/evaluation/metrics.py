"""Answer parsing and metrics: normalised match, multiple-choice letters, aggregation."""

from __future__ import annotations


import re
from collections.abc import Sequence
from typing import Any

import string

LETTERS = string.ascii_uppercase



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
    """Aggregate metrics over prediction records, overall and per `question_type` (see `_aggregate`). Records with
    an `error` (media that could not be read, a failed generation) are never scored: `count` is every record,
    `scored` the ones with a prediction, accuracies are over those, and `media_errors` counts the rest."""
    items = []
    for record in records:
        if record.get("error"):
            continue
        item = {"question_type": record.get("question_type"), **score_record(record)}
        verdict = (judgements or {}).get(record["id"])
        if verdict is not None and item["kind"] == "open_ended":
            item["judge_pred"], item["judge_score"] = verdict.get("pred"), verdict.get("score")
        items.append(item)
    with_judge = judgements is not None
    metrics = _aggregate(items, with_judge)
    metrics["count"], metrics["scored"] = len(records), len(items)
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


__all__ = [
    "compute_metrics",
    "normalize_answer",
    "parse_choice",
    "score_record",
]
