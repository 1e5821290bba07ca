"""The evaluation harness: answer parsing and metrics, dataset loading, the judge (callable and HTTP against a local
server), and end-to-end runs of a tiny random model over synthetic data (files, resuming, batching, CLI, demo
script)."""

from __future__ import annotations

import importlib.util
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import torch

from videollava_hf import VideoLlavaForConditionalGeneration
from videollava_hf.cli import main as cli_main
from videollava_hf.models.videollava.configuration_videollava import video_token_count
from videollava_hf.demo.synthetic import ANSWER_VOCAB, write_dataset
from videollava_hf.evaluation import (
    CHOICE_INSTRUCTION,
    EvalSample,
    GenerationSettings,
    JudgeError,
    JudgeParseError,
    OpenAIJudge,
    build_prompt,
    compute_metrics,
    evaluate,
    load_eval_dataset,
    normalize_answer,
    parse_choice,
    parse_judge_reply,
    read_jsonl,
    resolve_choice_answer,
    run_judge,
    score_record,
)
from videollava_hf.testing.tiny import tiny_config, tiny_processor, tiny_tokenizer

REPO_ROOT = Path(__file__).resolve().parents[1]
CHOICES = ["red circle", "blue square", "green triangle", "red"]


# --- answer parsing and metrics ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply,expected",
    [
        ("B", 1), ("b", 1), ("(B)", 1), ("B.", 1), ("[C]", 2), (" D ", 3),
        ("C) green triangle", 2), ("B. blue square", 1),
        ("The answer is B.", 1), ("Answer: (C)", 2), ("I think the answer is D", 3),
        ("Option A is wrong, the answer is C", 2),  # the stated answer wins over a mentioned option
        ("The correct option is (B)", 1),
        ("blue square", 1), ("It is a blue square.", 1), ("Green Triangle!", 2),
        ("A red circle moves", 0),  # "red" is inside the longer matching option "red circle"
        ("red", 3),
        ("The answer is Blue", None),  # "Blue" is a word, not the letter B, and no option's full text appears
        ("I am not sure", None), ("", None), ("E", None),  # E is not an option of four
    ],
)
def test_parse_choice(reply, expected):
    assert parse_choice(reply, CHOICES) == expected


@pytest.mark.parametrize(
    "text,expected",
    [
        ("The answer: Three.", "answer 3"), ("twenty-one", "21"), ("Twenty one cats", "21 cats"),
        ("An Apple!", "apple"), ("don't", "dont"), ("4 dogs", "4 dogs"), ("  Red  ", "red"), ("one two", "1 2"),
    ],
)
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


def test_open_ended_scores():
    record = {"id": "1", "answer": "three", "prediction": "Three."}
    assert score_record(record) == {"kind": "open_ended", "exact": False, "normalized": True, "contains": True,
                                    "correct": True}
    record["prediction"] = "There are 3 shapes."
    assert score_record(record)["normalized"] is False and score_record(record)["contains"] is True
    record["prediction"] = "three"
    assert score_record(record)["exact"] is True


def test_resolve_choice_answer():
    assert [resolve_choice_answer(a, CHOICES) for a in ("C", "(b)", 0, "Blue Square")] == [2, 1, 0, 1]
    for bad in ("Z", 4, "purple", True):
        with pytest.raises(ValueError):
            resolve_choice_answer(bad, CHOICES)


def test_compute_metrics_by_hand():
    records = [
        {"id": "a", "question_type": "colour", "answer": "red", "prediction": "Red", "choices": None},
        {"id": "b", "question_type": "colour", "answer": "blue", "prediction": "green", "choices": None},
        {"id": "c", "question_type": "shape", "answer": "B", "answer_index": 1, "prediction": "(B)",
         "choices": CHOICES},
        {"id": "d", "question_type": "shape", "answer": "A", "answer_index": 0, "prediction": "no idea",
         "choices": CHOICES},
    ]
    verdicts = {"a": {"pred": "yes", "score": 5.0}, "b": {"pred": None, "score": None}}
    metrics = compute_metrics(records, verdicts)
    assert metrics["count"] == 4 and metrics["accuracy"] == 0.5
    assert metrics["multiple_choice"] == {"count": 2, "accuracy": 0.5, "unparsed": 1}
    assert metrics["open_ended"] == {"count": 2, "exact_match": 0.0, "normalized_match": 0.5, "contains": 0.5}
    assert metrics["judge"] == {"judged": 1, "yes": 1, "no": 0, "failed": 1, "accuracy": 1.0, "average_score": 5.0}
    assert metrics["per_question_type"]["colour"]["accuracy"] == 0.5
    assert metrics["per_question_type"]["shape"]["multiple_choice"]["unparsed"] == 1


@pytest.mark.parametrize(
    "reply,expected",
    [
        ("{'pred': 'yes', 'score': 4}", {"pred": "yes", "score": 4.0}),
        ('Sure!\n```json\n{"pred": "No", "score": "2"}\n```', {"pred": "no", "score": 2.0}),
        ("{'pred': 'yes', 'score': 4.8}", {"pred": "yes", "score": 4.8}),
        ("pred: yes, score: 3", {"pred": "yes", "score": 3.0}),
        ("{'pred': True, 'score': 5}", {"pred": "yes", "score": 5.0}),
    ],
)
def test_parse_judge_reply(reply, expected):
    assert parse_judge_reply(reply) == expected


@pytest.mark.parametrize("reply", ["{'pred': 'maybe', 'score': 3}", "{'pred': 'yes', 'score': 7}", "hello",
                                   "{'pred': 'yes'}"])
def test_parse_judge_reply_rejects(reply):
    with pytest.raises(JudgeParseError):
        parse_judge_reply(reply)


# --- dataset loading ---------------------------------------------------------------------------------------------


def test_load_flat_jsonl_parquet_and_conversations(tmp_path):
    import datasets

    media = tmp_path / "media"
    media.mkdir()
    for name in ("a.mp4", "b.png"):
        (media / name).write_bytes(b"")  # loading only checks that the files exist
    flat = [
        {"id": "q1", "video": "a.mp4", "question": "Colour?", "answer": "B", "choices": ["red", "blue"],
         "question_type": "colour"},
        {"id": "q2", "image": "b.png", "question": "How many?", "answer": "two", "choices": None,
         "question_type": "count"},
    ]
    jsonl = tmp_path / "data.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in flat))
    samples = load_eval_dataset(jsonl, media, cache_dir=str(tmp_path / "cache"))
    assert [s.id for s in samples] == ["q1", "q2"]
    assert samples[0].answer_index == 1 and samples[0].choices == ("red", "blue")
    assert samples[0].video == str(media / "a.mp4") and samples[1].image == str(media / "b.png")

    parquet = tmp_path / "data.parquet"
    datasets.Dataset.from_list([{"question_id": 7, "video_path": str(media / "a.mp4"), "question": "Which?",
                                 "answer": 0, "choices": ["up", "down"]}]).to_parquet(str(parquet))
    (sample,) = load_eval_dataset(parquet, cache_dir=str(tmp_path / "cache"))
    assert (sample.id, sample.answer_index, sample.video) == ("7", 0, str(media / "a.mp4"))

    conv = tmp_path / "conv.json"
    conv.write_text(json.dumps([{"id": "c", "video": "a.mp4", "conversations": [
        {"from": "human", "value": "<video>\nWhat moves?"}, {"from": "gpt", "value": "the square"},
        {"from": "human", "value": "Where?"}, {"from": "gpt", "value": "left"}]}]))
    (sample,) = load_eval_dataset(conv, media, cache_dir=str(tmp_path / "cache"))
    assert (sample.question, sample.answer, sample.choices) == ("What moves?", "the square", None)

    with pytest.raises(FileNotFoundError, match="media root"):
        load_eval_dataset(conv, tmp_path, cache_dir=str(tmp_path / "cache"))  # a.mp4 is not directly under tmp_path
    duplicated = tmp_path / "dup.jsonl"
    duplicated.write_text(json.dumps(flat[1]) + "\n" + json.dumps(flat[1]) + "\n")
    with pytest.raises(ValueError, match="repeats the ids"):
        load_eval_dataset(duplicated, media, cache_dir=str(tmp_path / "cache"))
    with pytest.raises(ValueError, match=".json, .jsonl or .parquet"):
        load_eval_dataset(tmp_path / "data.csv")


def test_multiple_choice_prompt_lists_options():
    tokenizer = tiny_tokenizer()
    processor = tiny_processor(tiny_config(tokenizer), tokenizer)
    sample = EvalSample(id="1", question="Which colour?", answer="B", choices=("red", "blue"), answer_index=1,
                        video="x.mp4")
    prompt = build_prompt(processor, sample, add_system_prompt=False)
    assert prompt == f"USER: <video>\nWhich colour?\n(A) red\n(B) blue\n{CHOICE_INSTRUCTION} ASSISTANT:"


# --- the HTTP judge against a local server -----------------------------------------------------------------------


class _JudgeHandler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        status, content = self.server.reply(body)
        payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture()
def judge_server():
    """A chat-completions stand-in on 127.0.0.1 that serves at most 20 requests or 30 s, then stops itself."""
    server = HTTPServer(("127.0.0.1", 0), _JudgeHandler)
    server.timeout = 0.2
    server.seen, server.stop = [], False
    deadline = time.monotonic() + 30

    def serve():
        while not server.stop and len(server.seen) < 20 and time.monotonic() < deadline:
            server.handle_request()
        server.server_close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server
    server.stop = True
    thread.join(timeout=5)


def _grading_reply(body):
    """Grade like a judge would: "yes" when the predicted answer equals the reference (read from the prompt)."""
    user = body["messages"][-1]["content"]
    reference = user.split("Reference answer: ")[1].split("\n")[0]
    predicted = user.split("Predicted answer: ")[1].split("\n")[0]
    if normalize_answer(reference) == normalize_answer(predicted):
        return 200, "{'pred': 'yes', 'score': 5}"
    return 200, 'Here is my verdict:\n```\n{"pred": "no", "score": 1}\n```'


def test_http_judge(judge_server, monkeypatch):
    monkeypatch.setenv("TEST_JUDGE_KEY", "sekrit")
    judge_server.reply = _grading_reply
    url = f"http://127.0.0.1:{judge_server.server_address[1]}/v1"
    judge = OpenAIJudge(url, "judge-model", api_key_env="TEST_JUDGE_KEY", retry_wait=0.0, timeout=10)
    assert judge("What colour is it?", "red", "Red.") == {"pred": "yes", "score": 5.0}
    assert judge("What colour is it?", "red", "blue") == {"pred": "no", "score": 1.0}
    first = judge_server.seen[0]
    assert first["path"] == "/v1/chat/completions" and first["auth"] == "Bearer sekrit"
    assert first["body"]["model"] == "judge-model" and first["body"]["temperature"] == 0.0
    roles = [m["role"] for m in first["body"]["messages"]]
    assert roles == ["system", "user"] and "What colour is it?" in first["body"]["messages"][1]["content"]


def test_http_judge_retries_and_errors(judge_server, tmp_path, monkeypatch):
    monkeypatch.delenv("MISSING_JUDGE_KEY", raising=False)
    url = f"http://127.0.0.1:{judge_server.server_address[1]}/v1/chat/completions"
    with pytest.raises(ValueError, match="MISSING_JUDGE_KEY"):
        OpenAIJudge(url, "m", api_key_env="MISSING_JUDGE_KEY")
    judge = OpenAIJudge(url, "m", max_retries=1, retry_wait=0.0, timeout=10)

    replies = iter([(500, "overloaded"), (200, "{'pred': 'no', 'score': 0}")])
    judge_server.reply = lambda body: next(replies)
    assert judge("q", "a", "b") == {"pred": "no", "score": 0.0}  # retried after the 500
    assert len(judge_server.seen) == 2 and judge_server.seen[0]["auth"] is None

    judge_server.reply = lambda body: (401, "bad key")
    with pytest.raises(JudgeError, match="HTTP 401"):
        judge("q", "a", "b")
    assert len(judge_server.seen) == 3  # a refusal is not retried

    judge_server.reply = lambda body: (200, "I cannot tell.")
    with pytest.raises(JudgeParseError):
        judge("q", "a", "b")
    assert len(judge_server.seen) == 5  # one retry for an unparseable reply

    # run_judge records the unparseable verdict as failed and grades only open-ended records
    judge_server.reply = _grading_reply
    records = [{"id": "1", "question": "Q?", "answer": "two", "prediction": "2", "choices": None},
               {"id": "2", "question": "Q?", "answer": "two", "prediction": "three", "choices": None},
               {"id": "3", "question": "Q?", "answer": "A", "answer_index": 0, "prediction": "A",
                "choices": ["x", "y"]}]
    verdicts = run_judge(judge, records, tmp_path / "judgements.jsonl")
    assert {k: v["pred"] for k, v in verdicts.items()} == {"1": "yes", "2": "no"}
    assert len(judge_server.seen) == 7
    assert run_judge(judge, records, tmp_path / "judgements.jsonl") == verdicts  # cached: no new request
    assert len(judge_server.seen) == 7


def test_run_judge_records_unparseable_verdicts(tmp_path):
    def judge(question, answer, prediction):
        return "no idea" if prediction == "?" else {"pred": "Yes.", "score": 4}

    records = [{"id": "1", "question": "Q", "answer": "a", "prediction": "?", "choices": None},
               {"id": "2", "question": "Q", "answer": "a", "prediction": "a", "choices": None}]
    verdicts = run_judge(judge, records, tmp_path / "j.jsonl")
    assert verdicts["1"]["pred"] is None and "not a" in verdicts["1"]["error"]
    assert (verdicts["2"]["pred"], verdicts["2"]["score"]) == ("yes", 4.0)
    assert compute_metrics(records, verdicts)["judge"]["failed"] == 1

    calls = []

    def counting(question, answer, prediction):
        calls.append(prediction)
        return judge(question, answer, prediction)

    counting.name = judge.__qualname__  # the same judge, so its cached verdicts apply
    records[0] = {**records[0], "prediction": "a"}  # a retried question with a new answer is judged again
    records.append({"id": "3", "question": "Q", "answer": "a", "prediction": "", "choices": None, "error": "bad"})
    verdicts = run_judge(counting, records, tmp_path / "j.jsonl")
    assert calls == ["a"] and verdicts["1"]["pred"] == "yes" and "3" not in verdicts  # media errors: not judged


# --- end to end on a tiny random model ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    """4 videos + 2 images of the synthetic shapes world, single-turn, in the LLaVA conversation format."""
    root = tmp_path_factory.mktemp("synthetic")
    return write_dataset(root, 4, 2, seed=11, num_frames=8, size=32, json_name="eval.json", multi_turn_prob=0.0)


@pytest.fixture(scope="module")
def tiny_eval_model():
    tokenizer = tiny_tokenizer()
    config = tiny_config(tokenizer)
    torch.manual_seed(0)
    model = VideoLlavaForConditionalGeneration(config).eval()
    # With the default init (std 0.02) a random model gives the same answer whatever it sees; larger weights make
    # its answers depend on the input, so a batching bug that mixes samples up would change them.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" not in name:
                param.normal_(0.0, 0.1)
    return model, tiny_processor(config, tokenizer)


@pytest.fixture(scope="module")
def saved_model(tiny_eval_model, tmp_path_factory) -> Path:
    model, processor = tiny_eval_model
    directory = tmp_path_factory.mktemp("tiny_model")
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def _answers(json_path: Path) -> dict[str, str]:
    return {r["id"]: r["conversations"][1]["value"] for r in json.loads(json_path.read_text())}


def test_evaluate_files_and_batching(tiny_eval_model, synthetic, tmp_path, capsys):
    model, processor = tiny_eval_model
    settings = GenerationSettings(max_new_tokens=4)
    cache = str(tmp_path / "cache")
    single = evaluate(model, processor, synthetic, tmp_path / "b1", settings=settings, batch_size=1,
                      progress=True, cache_dir=cache)
    assert "6/6" in capsys.readouterr().err  # the progress bar ran to the end
    # 5 per batch: the first batch mixes videos and images, the second is smaller
    evaluate(model, processor, synthetic, tmp_path / "b5", settings=settings, batch_size=5, progress=False,
             cache_dir=cache)
    one = {r["id"]: r["prediction"] for r in read_jsonl(tmp_path / "b1" / "predictions.jsonl")}
    five = {r["id"]: r["prediction"] for r in read_jsonl(tmp_path / "b5" / "predictions.jsonl")}
    assert one == five and len(one) == 6
    assert len(set(one.values())) > 1  # answers depend on the input, so the comparison is meaningful

    saved = json.loads((tmp_path / "b1" / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(single))
    answers = _answers(synthetic)  # single-word answers: lowercase equality is the normalised match
    assert single["accuracy"] == sum(one[i].strip().lower() == answers[i] for i in answers) / 6
    types = {r["question_type"] for r in json.loads(synthetic.read_text())}
    assert set(single["per_question_type"]) == types
    assert sum(part["count"] for part in single["per_question_type"].values()) == 6
    assert single["mean_video_tokens"] == 8 * 17 and single["mean_num_frames"] == 8


def test_evaluate_resumes_and_judges(tiny_eval_model, synthetic, tmp_path, monkeypatch):
    model, processor = tiny_eval_model
    settings = GenerationSettings(max_new_tokens=3)
    out, cache = tmp_path / "run", str(tmp_path / "cache")
    evaluate(model, processor, synthetic, out, settings=settings, batch_size=2, limit=2, progress=False,
             cache_dir=cache)
    first = read_jsonl(out / "predictions.jsonl")
    assert len(first) == 2
    # Doctor the first run: one correct answer, one marker, and a line cut short by a crash.
    first[0]["prediction"], first[1]["prediction"] = first[0]["answer"], "SENTINEL"
    (out / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in first) + '{"id": "cut", "pre')

    batches: list[int] = []
    real_generate = model.generate

    def counting_generate(*args, **kwargs):
        batches.append(kwargs["input_ids"].shape[0])
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(model, "generate", counting_generate)
    judged: list[str] = []

    def judge(question, answer, prediction):
        judged.append(prediction)
        same = prediction.strip().lower() == answer.lower()
        return {"pred": "yes" if same else "no", "score": 5 if same else 0}

    metrics = evaluate(model, processor, synthetic, out, settings=settings, batch_size=2, judge=judge,
                       progress=False, cache_dir=cache)
    assert batches == [2, 2]  # only the four questions left, one generate call per batch
    final = read_jsonl(out / "predictions.jsonl")
    assert len(final) == 6 and len({r["id"] for r in final}) == 6
    assert final[0]["prediction"] == final[0]["answer"] and final[1]["prediction"] == "SENTINEL"
    expected = sum(r["prediction"].strip().lower() == r["answer"] for r in final) / 6
    assert expected >= 1 / 6 and metrics["accuracy"] == expected
    assert len(judged) == 6 and metrics["judge"]["accuracy"] == expected
    assert metrics["judge"]["average_score"] == pytest.approx(5 * expected)
    assert len(read_jsonl(out / "judgements.jsonl")) == 6

    batches.clear()
    judged.clear()
    again = evaluate(model, processor, synthetic, out, settings=settings, batch_size=2, judge=judge,
                     progress=False, cache_dir=cache)
    assert batches == [] and judged == []  # everything was done and judged
    assert again["accuracy"] == metrics["accuracy"] and again["judge"] == metrics["judge"]
    with pytest.raises(ValueError, match="other settings"):
        evaluate(model, processor, synthetic, out, settings=GenerationSettings(max_new_tokens=3, num_frames=4),
                 progress=False, cache_dir=cache)


def test_unreadable_media_is_recorded_and_retried(tiny_eval_model, synthetic, tmp_path):
    import shutil

    model, processor = tiny_eval_model
    good = next(p for p in sorted((synthetic.parent / "videos").iterdir()))
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"this is not a video")
    data = tmp_path / "qa.jsonl"
    data.write_text(json.dumps({"id": "ok", "video": str(good), "question": "Colour?", "answer": "red"}) + "\n"
                    + json.dumps({"id": "bad", "video": str(broken), "question": "Colour?", "answer": "red"}) + "\n")
    settings = GenerationSettings(max_new_tokens=2)
    cache = str(tmp_path / "cache")
    metrics = evaluate(model, processor, data, tmp_path / "out", settings=settings, batch_size=2, progress=False,
                       cache_dir=cache)
    records = {r["id"]: r for r in read_jsonl(tmp_path / "out" / "predictions.jsonl")}
    assert "error" in records["bad"] and str(broken) in records["bad"]["error"] and "error" not in records["ok"]
    assert metrics["media_errors"] == 1 and metrics["count"] == 2

    shutil.copy(good, broken)  # the file is fixed: a rerun retries only that question
    metrics = evaluate(model, processor, data, tmp_path / "out", settings=settings, batch_size=2, progress=False,
                       cache_dir=cache)
    assert metrics["media_errors"] == 0 and metrics["timing"]["generated_this_run"] == 1
    records = {r["id"]: r for r in read_jsonl(tmp_path / "out" / "predictions.jsonl")}
    assert records["bad"]["prediction"] == records["ok"]["prediction"]  # same video, same question


def test_frame_groups_keep_one_call_per_frame_count():
    from videollava_hf.evaluation.generate import _frame_groups

    assert _frame_groups([8, None, 4, 8]) == [[0, 1, 3], [2]]
    assert _frame_groups([None, None]) == [[0, 1]]


def test_cli_eval(saved_model, synthetic, tmp_path, capsys):
    out = tmp_path / "cli"
    code = cli_main(["eval", "--model", str(saved_model), "--data", str(synthetic), "--out", str(out), "--limit", "3",
                     "--batch-size", "2", "--num-frames", "4", "--video-pooling", "average", "--max-new-tokens", "2",
                     "--no-progress"])
    assert code == 0
    assert "accuracy" in capsys.readouterr().out
    assert json.loads((out / "metrics.json").read_text())["count"] == 3
    videos = [r for r in read_jsonl(out / "predictions.jsonl") if r["video"]]
    # 32-px frames, patch 8: a 4 x 4 grid pooled 2 x 2 -> 2 x 2 patches + CLS = 5 tokens per frame
    assert videos and all(r["num_frames"] == 4 and r["video_tokens"] == 20 for r in videos)

    assert cli_main(["eval", "--data", str(synthetic), "--out", str(out), "--judge-model", "m"]) == 2
    assert "--judge-url" in capsys.readouterr().err

    from videollava_hf.cli import build_parser

    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    eval_parser = subparsers.choices["eval"]
    for action in eval_parser._actions:
        assert action.help, f"{action.option_strings} has no help text"


def test_eval_demo_script(saved_model, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("eval_demo", REPO_ROOT / "benchmarks" / "eval_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    code = module.main(["--model", str(saved_model), "--videos", "3", "--images", "1", "--size", "32",
                        "--frames", "2", "4", "--modes", "off", "slowfast", "--max-new-tokens", "2",
                        "--batch-size", "4", "--work", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| 2 |") or line.startswith("| 4 |")]
    assert [(r[0].strip(), r[1].strip()) for r in rows] == [
        ("2", "off"), ("2", "SlowFast s=4 p=2"), ("4", "off"), ("4", "SlowFast s=4 p=2")]
    # 17 tokens per unpooled frame; SlowFast: slow frame 2 x 2 + CLS = 5, fast frames 1 x 1 + CLS = 2
    assert [int(r[2]) for r in rows] == [34, 7, 68, 11]
    for r in rows:
        assert 0.0 <= float(r[3]) <= 100.0 and float(r[-1]) > 0
    assert "| question type | questions | accuracy % |" in out
    with pytest.raises(SystemExit):
        module.main(["--model", str(saved_model), "--seed", "0", "--train-seed", "0", "--work", str(tmp_path)])
