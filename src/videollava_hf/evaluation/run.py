"""The evaluation driver: predict resumably, judge optionally, score, write metrics.json."""

from __future__ import annotations


import json
import logging
import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path

from ..inference.engines import ModelSpec, Shard, answer_batches, batch_plan, merge_parts, part_path, read_with_parts
from ..utils.jsonl import JsonlWriter, read_jsonl
from .data import EvalSample, JUDGEMENTS_FILE, JudgeFn, METRICS_FILE, PREDICTIONS_FILE, SETTINGS_FILE, load_eval_dataset
from .generate import GenerationSettings, as_prediction, request_for
from .judge import judge_name, run_judge
from .metrics import compute_metrics

logger = logging.getLogger(__name__)

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
    num_workers: int = 0,
    engine: str = "local",
    model_spec: ModelSpec | None = None,
    ray_address: str | None = None,
    ray_actors: int = 1,
    shard: Shard | None = None,
) -> dict | None:
    """Predict (resumably) and score; writes predictions.jsonl, judgements.jsonl (with a judge) and metrics.json
    under `out_dir` and returns the metrics. `data`: a dataset file or folder, a `datasets.Dataset`, or a list of
    `EvalSample`s (see `load_eval_dataset`).

    `num_workers` processes read and preprocess the media while the model generates; `engine="ray"` runs the
    same batches as a Ray Data pipeline (`model_spec` says what its actors load; `model` may be None); with a
    `shard` of several processes (accelerate) each writes a part file and rank 0 merges them and scores (the other
    ranks return None). Questions whose media cannot be read get an `error` and are never scored."""
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
    shard = shard or Shard()
    name = model_spec.model_id if model is None and model_spec is not None else getattr(model, "name_or_path", "")
    run_settings = {"model": str(name or ""), **asdict(settings)}
    if shard.rank == 0:
        _check_settings(out, run_settings, overwrite)
    shard.wait()
    if shard.rank != 0:
        _check_settings(out, run_settings, overwrite=False)

    pred_path = out / PREDICTIONS_FILE
    # A later line for an id (a retried error) wins; parts of an interrupted sharded run count as done.
    done = {r["id"]: r for r in read_with_parts(pred_path)}
    pending = [s for s in samples if s.id not in done or "error" in done[s.id]]
    shard.wait()  # every rank has read what is done before any rank writes
    plan = batch_plan(len(pending), batch_size)
    requests = [request_for(s) for s in pending]
    sink_path = pred_path if shard.world == 1 else part_path(pred_path, shard.rank)
    started = time.perf_counter()
    bar = tqdm(total=len(samples), initial=len(samples) - len(pending), desc="eval", unit="q",
               disable=not progress or shard.rank != 0, file=sys.stderr)
    batches = answer_batches(requests, plan, settings, processor=processor, batches=shard.batches(plan),
                             engine=engine, num_workers=num_workers, model=model, spec=model_spec,
                             ray_address=ray_address, ray_actors=ray_actors)
    with JsonlWriter(sink_path) as sink, bar:
        for b, results in batches:
            rows = [_record(pending[i], as_prediction(r)) for i, r in zip(plan[b], results)]
            sink.write(rows)  # whole lines, flushed and fsynced: a killed run keeps every finished batch
            done.update((row["id"], row) for row in rows)
            bar.update(len(rows))
    if sink.repaired_bytes:
        logger.warning("%s: cut a torn last line (%d bytes) left by an interrupted run; that question is answered "
                       "again.", sink_path, sink.repaired_bytes)
    shard.wait()
    if shard.world > 1:
        if shard.rank == 0:
            order = {s.id: i for i, s in enumerate(samples)}
            merge_parts(pred_path, lambda r: order.get(r["id"], len(order)))
            done = {r["id"]: r for r in read_jsonl(pred_path)}
        shard.wait()  # the merge is done before any process exits
        if shard.rank != 0:
            return None  # rank 0 judges, scores and reports
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


__all__ = ["evaluate"]
