"""Evaluation harness: run a Video-LLaVA model over a local video-QA dataset and score its answers.

Dataset (one record per question; JSON list, JSONL or parquet, read with `datasets`):

    {"id": "q1", "video": "clips/a.mp4", "question": "What is the man doing?", "answer": "ironing",
     "choices": ["cooking", "ironing", "running"], "question_type": "action"}

- `id` (or `question_id`): unique; the row number when absent.
- `video` / `video_path` and/or `image` / `image_path`: media paths, relative ones resolved against the media root
  (default: the data file's folder).
- `question`, `answer`: text. Records in the LLaVA conversation format (`"conversations": [{"from": "human",
  "value": "<video>\\n..."}, {"from": "gpt", "value": "..."}]`, as written by `videollava_hf.demo.synthetic`) are
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

from ..utils.jsonl import read_jsonl
from .data import (
    CHOICE_INSTRUCTION,
    JUDGEMENTS_FILE,
    METRICS_FILE,
    PREDICTIONS_FILE,
    SETTINGS_FILE,
    EvalSample,
    load_eval_dataset,
    resolve_choice_answer,
    sample_from_record,
)
from .generate import GenerationSettings, build_prompt, predict_batch, question_text
from .judge import (
    JUDGE_SYSTEM_PROMPT,
    JUDGE_USER_TEMPLATE,
    JudgeError,
    JudgeParseError,
    OpenAIJudge,
    check_judgement,
    judge_messages,
    judge_name,
    parse_judge_reply,
    run_judge,
)
from .metrics import compute_metrics, normalize_answer, parse_choice, score_record
from .run import evaluate

__all__ = [
    "CHOICE_INSTRUCTION",
    "EvalSample",
    "GenerationSettings",
    "JUDGEMENTS_FILE",
    "JUDGE_SYSTEM_PROMPT",
    "JUDGE_USER_TEMPLATE",
    "JudgeError",
    "JudgeParseError",
    "METRICS_FILE",
    "OpenAIJudge",
    "PREDICTIONS_FILE",
    "SETTINGS_FILE",
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
