"""The evaluation driver: predict resumably, judge optionally, score, write metrics.json."""

from __future__ import annotations


import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path

from ..utils.jsonl import open_for_append, read_jsonl
from .data import CHOICE_INSTRUCTION, EvalSample, JUDGEMENTS_FILE, JudgeFn, METRICS_FILE, PREDICTIONS_FILE, SETTINGS_FILE, load_eval_dataset, resolve_choice_answer, sample_from_record
from .generate import GenerationSettings, build_prompt, predict_batch, question_text
from .judge import JUDGE_SYSTEM_PROMPT, JUDGE_USER_TEMPLATE, JudgeError, JudgeParseError, OpenAIJudge, check_judgement, judge_messages, judge_name, parse_judge_reply, run_judge
from .metrics import compute_metrics, normalize_answer, parse_choice, score_record

# ------------------------------------------------------------------------------------------------------------
# Files and the driver
# ------------------------------------------------------------------------------------------------------------


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
    under `out_dir` and returns the metrics. `data`: a dataset file or folder, a `datasets.Dataset`, or a list of
    `EvalSample`s (see `load_eval_dataset`)."""
    from tqdm import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    settings = settings or GenerationSettings()
    if isinstance(data, (str, os.PathLike)) or hasattr(data, "features"):  # a path or a datasets.Dataset
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
    with open_for_append(pred_path) as sink, bar:
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
