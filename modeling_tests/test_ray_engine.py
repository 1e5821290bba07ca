"""`--engine ray` on a local Ray with 2 CPUs: a Ray Data pipeline (decoding as CPU tasks, the model in an actor)
gives the same rows as the in-process run, and a worker killed mid-run is retried without losing or duplicating a
row. One Ray session serves the module, so Ray starts once."""

from __future__ import annotations

import json

import pytest

ray = pytest.importorskip("ray", reason="Ray is in the [ray] extra (part of [test]); install videollava-hf[test]")

from test_batch_jobs import checkpoint, folder, reference  # noqa: E402,F401  (shared fixtures)
from test_cli import run_cli  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_describe_on_ray_gives_the_local_rows(capsys, tmp_path, folder, checkpoint, reference):
    out = tmp_path / "ray.jsonl"
    code, _, err = run_cli(capsys, "describe", str(folder), "--out", str(out), "--model", str(checkpoint),
                           "--batch-size", "2", "--max-new-tokens", "4", "--engine", "ray")
    assert code == 1 and "1 error" in err  # the broken file, as in the local run
    assert out.read_text() == reference
    code, _, err = run_cli(capsys, "describe", str(folder), "--out", str(out), "--model", str(checkpoint),
                           "--batch-size", "2", "--max-new-tokens", "4", "--engine", "ray")
    assert "wrote 1 line(s)" in err  # resumed: only the failed file is tried again
    assert out.read_text().splitlines()[:5] == reference.splitlines()


def test_a_killed_worker_is_retried_without_losing_or_duplicating_rows(tmp_path, folder, checkpoint):
    from videollava_hf.inference.engines import ModelSpec, batch_plan, ray_answers
    from videollava_hf.inference.generate import GenerationSettings, Request, answer
    from videollava_hf.testing.faults import KillWorkerOnce, killed_pid

    names = sorted(p.name for p in folder.iterdir())
    requests = [Request(text="What is it?", name=n, **{"image" if n.endswith(".jpg") else "video": str(folder / n)})
                for n in names]
    settings = GenerationSettings(max_new_tokens=4)
    spec = ModelSpec(str(checkpoint))
    plan = batch_plan(len(requests), 2)
    marker = tmp_path / "killed"
    got = list(ray_answers(spec, spec.load()[1], requests, plan, settings,
                           prepare_fn=KillWorkerOnce("c_clip.mp4", marker)))
    assert killed_pid(marker) is not None  # the worker preparing batch 1 really died
    assert [b for b, _ in got] == [0, 1, 2]  # every batch once, in order
    model, processor = spec.load()
    expected = [answer(model, processor, [requests[i] for i in batch], settings) for batch in plan]
    assert [results for _, results in got] == expected


def test_eval_on_ray_gives_the_local_predictions(tmp_path, folder, checkpoint):
    from videollava_hf.cli import main

    data = tmp_path / "qa.jsonl"
    names = sorted(p.name for p in folder.iterdir())
    data.write_text("".join(json.dumps({"id": f"q{i}", ("image" if n.endswith(".jpg") else "video"): str(folder / n),
                                        "question": "Colour?", "answer": "red"}) + "\n" for i, n in enumerate(names)))
    common = ["--model", str(checkpoint), "--data", str(data), "--max-new-tokens", "3", "--batch-size", "2",
              "--no-progress"]
    assert main(["eval", *common, "--out", str(tmp_path / "local")]) == 1  # one media error
    assert main(["eval", *common, "--out", str(tmp_path / "ray"), "--engine", "ray"]) == 1
    local = (tmp_path / "local" / "predictions.jsonl").read_text()
    assert (tmp_path / "ray" / "predictions.jsonl").read_text() == local
