"""LLM judge following the Video-ChatGPT protocol (a callable or an OpenAI-compatible endpoint)."""

from __future__ import annotations


import ast
import json
import math
import os
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..utils.jsonl import JsonlWriter, read_jsonl
from .data import JudgeFn



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
    with JsonlWriter(path) as sink, bar:
        for record in todo:
            line = {"id": record["id"], "judge": name, "prediction": record["prediction"]}
            try:
                line.update(check_judgement(judge(record["question"], record["answer"], record["prediction"])))
            except JudgeParseError as err:
                line.update({"pred": None, "score": None, "error": str(err)})
            sink.write([line])
            verdicts[record["id"]] = line
            bar.update(1)
    return verdicts


__all__ = [
    "JUDGE_SYSTEM_PROMPT",
    "JUDGE_USER_TEMPLATE",
    "JudgeError",
    "JudgeParseError",
    "OpenAIJudge",
    "check_judgement",
    "judge_messages",
    "judge_name",
    "parse_judge_reply",
    "run_judge",
]
