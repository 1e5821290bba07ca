"""Batch jobs at scale (issues 15-17): one answer path for describe / eval, per-item isolation, durable JSONL, and
the engines that must all give the same rows: `--num-workers N` (DataLoader workers) and `accelerate launch` with
two CPU processes on gloo. (Ray: test_ray_engine.py.) The reference in each comparison is the plain in-process run
(`--num-workers 0`), itself checked against the pipeline in test_cli.py."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from test_cli import build_checkpoint, run_cli
from videollava_hf.evaluation.metrics import normalize_answer
from videollava_hf.utils.jsonl import JsonlWriter, read_jsonl

REPO_ROOT = Path(__file__).resolve().parents[1]
NEW = "4"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return build_checkpoint(tmp_path_factory.mktemp("batch_model"))


@pytest.fixture(scope="module")
def folder(tmp_path_factory, fixtures_dir) -> Path:
    """Two videos, two images and one broken video: five items, the fourth unreadable."""
    root = tmp_path_factory.mktemp("batch_media")
    for name in ("a_clip.mp4", "b_photo.jpg", "c_clip.mp4", "e_photo.jpg"):
        source = {"a_clip.mp4": "sample_demo_1.mp4", "b_photo.jpg": "extreme_ironing.jpg",
                  "c_clip.mp4": "sample_demo_3.mp4", "e_photo.jpg": "waterview.jpg"}[name]
        shutil.copy(fixtures_dir / source, root / name)
    (root / "d_broken.mp4").write_bytes(b"not a video")
    return root


def describe(capsys, folder: Path, out: Path, checkpoint: Path, *extra: str) -> tuple[int, str]:
    code, _, err = run_cli(capsys, "describe", str(folder), "--out", str(out), "--model", str(checkpoint),
                           "--batch-size", "2", "--max-new-tokens", NEW, *extra)
    return code, err


@pytest.fixture(scope="module")
def reference(tmp_path_factory, folder, checkpoint) -> str:
    """The describe output of the plain run (--num-workers 0), as text."""
    from videollava_hf.cli import main

    out = tmp_path_factory.mktemp("reference") / "answers.jsonl"
    assert main(["describe", str(folder), "--out", str(out), "--model", str(checkpoint), "--batch-size", "2",
                 "--max-new-tokens", NEW]) == 1  # one broken file: exit status 1
    return out.read_text()


def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A tiny PNG whose header claims width x height pixels (Pillow refuses > 2 x MAX_IMAGE_PIXELS as a bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(
        b"IEND", b"")


# --- isolation ------------------------------------------------------------------------------------------------------


def test_reference_rows_isolate_the_broken_file(reference):
    rows = [json.loads(line) for line in reference.splitlines()]
    assert [r["file"] for r in rows] == ["a_clip.mp4", "b_photo.jpg", "c_clip.mp4", "d_broken.mp4", "e_photo.jpg"]
    assert "error" in rows[3] and "d_broken.mp4" in rows[3]["error"] and "answer" not in rows[3]
    assert all("answer" in r and "error" not in r for i, r in enumerate(rows) if i != 3)


def test_describe_turns_a_decompression_bomb_into_one_error_row(capsys, tmp_path, fixtures_dir, checkpoint):
    root = tmp_path / "media"
    root.mkdir()
    shutil.copy(fixtures_dir / "waterview.jpg", root / "a.jpg")
    (root / "bomb.png").write_bytes(png_bomb())
    shutil.copy(fixtures_dir / "extreme_ironing.jpg", root / "c.jpg")
    out = tmp_path / "answers.jsonl"
    code, err = describe(capsys, root, out, checkpoint)
    assert code == 1 and "1 error" in err and "Traceback" not in err
    rows = {r["file"]: r for r in read_jsonl(out)}
    assert set(rows) == {"a.jpg", "bomb.png", "c.jpg"}
    assert "bomb.png" in rows["bomb.png"]["error"] and "answer" not in rows["bomb.png"]
    assert "answer" in rows["a.jpg"] and "answer" in rows["c.jpg"]  # the bomb's batch mate (a.jpg) is kept
    assert "describe: error: bomb.png" in err  # the summary names the file and the reason


def test_eval_never_scores_unreadable_media(capsys, tmp_path, folder, checkpoint):
    """An unreadable video whose reference normalises to "" used to be scored correct ("accuracy 100%")."""
    from videollava_hf.cli import main

    data = tmp_path / "qa.jsonl"
    rows = [{"id": "bad", "video": str(folder / "d_broken.mp4"), "question": "What?", "answer": "The"},
            {"id": "ok", "video": str(folder / "a_clip.mp4"), "question": "What?", "answer": "a ball"}]
    assert normalize_answer("The") == ""
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code = main(["eval", "--model", str(checkpoint), "--data", str(data), "--out", str(tmp_path / "out"),
                 "--max-new-tokens", "2", "--no-progress", "--batch-size", "2"])
    printed = capsys.readouterr().out
    assert code == 1  # an item failed
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    predictions = {r["id"]: r for r in read_jsonl(tmp_path / "out" / "predictions.jsonl")}
    assert predictions["bad"]["prediction"] is None and "d_broken.mp4" in predictions["bad"]["error"]
    ok_correct = normalize_answer(predictions["ok"]["prediction"]) == normalize_answer("a ball")
    assert metrics["media_errors"] == 1 and metrics["scored"] == 1 and metrics["count"] == 2
    assert metrics["accuracy"] == float(ok_correct)
    assert "media errors: 1" in printed and "scored: 1" in printed


# --- durable JSONL --------------------------------------------------------------------------------------------------


def test_jsonl_writer_appends_whole_synced_lines_and_repairs_a_torn_tail(tmp_path, monkeypatch):
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    path = tmp_path / "rows.jsonl"
    with JsonlWriter(path) as sink:
        sink.write([{"id": 1}, {"id": "é"}])
        sink.write([])
        sink.write([{"id": 3}])
    assert len(synced) == 2  # one fsync per non-empty write
    with path.open("a") as torn:
        torn.write('{"id": 4, "cut')  # a hard kill mid-write
    assert [r["id"] for r in read_jsonl(path)] == [1, "é", 3]  # readers ignore the torn tail
    with JsonlWriter(path) as sink:
        assert sink.repaired_bytes == len('{"id": 4, "cut')
        sink.write([{"id": 4}])
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == [1, "é", 3, 4]
    path.write_text('{"id": 1}\nnot json\n{"id": 2}\n')
    with pytest.raises(ValueError, match="line 2 is not valid JSON"):
        read_jsonl(path)  # damage in the middle is not an interrupted append: named, not skipped


# --- --num-workers ----------------------------------------------------------------------------------------------


def test_describe_num_workers_gives_the_same_rows_and_resumes(capsys, tmp_path, folder, checkpoint, reference):
    out = tmp_path / "w2.jsonl"
    code, err = describe(capsys, folder, out, checkpoint, "--num-workers", "2")
    assert code == 1 and "1 error" in err
    assert out.read_text() == reference  # same rows, same order

    lines = reference.splitlines(keepends=True)
    resumed = tmp_path / "resumed.jsonl"
    resumed.write_text("".join(lines[:2]) + lines[2][:25])  # two rows, then a row cut short by a kill
    code, err = describe(capsys, folder, resumed, checkpoint, "--num-workers", "2")
    assert code == 1 and "ignoring 1 unreadable line" in err and "wrote 3 line(s)" in err
    assert resumed.read_text() == reference


def test_eval_num_workers_gives_the_same_predictions(tmp_path, folder, checkpoint):
    from videollava_hf.evaluation import GenerationSettings, evaluate
    from videollava_hf.inference.engines import ModelSpec

    data = tmp_path / "qa.jsonl"
    names = sorted(p.name for p in folder.iterdir())
    data.write_text("".join(json.dumps({"id": f"q{i}", ("image" if n.endswith(".jpg") else "video"): str(folder / n),
                                        "question": "What is it?", "answer": "red"}) + "\n"
                            for i, n in enumerate(names)))
    model, processor = ModelSpec(str(checkpoint)).load()
    settings = GenerationSettings(max_new_tokens=3)
    runs = {}
    for workers in (0, 2):
        evaluate(model, processor, data, tmp_path / f"w{workers}", settings=settings, batch_size=2,
                 progress=False, num_workers=workers)
        runs[workers] = (tmp_path / f"w{workers}" / "predictions.jsonl").read_text()
    assert runs[0] == runs[2]
    rows = [json.loads(line) for line in runs[0].splitlines()]
    assert [r["id"] for r in rows] == [f"q{i}" for i in range(5)] and sum("error" in r for r in rows) == 1


# --- accelerate launch: two CPU processes on gloo ---------------------------------------------------------------------


def accelerate_launch(*argv: str) -> subprocess.CompletedProcess:
    exe = shutil.which("accelerate")
    launcher = [exe, "launch"] if exe else [sys.executable, "-m", "accelerate.commands.launch"]
    command = launcher + ["--config_file", str(REPO_ROOT / "recipes" / "accelerate" / "ddp_cpu.yaml"),
                          "-m", "videollava_hf.cli", *argv]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_accelerate_describe_shards_merges_in_order_and_resumes(tmp_path, folder, checkpoint, reference):
    """An interrupted sharded run left its first row in the output (then a torn line) and rank 1's second batch
    row in a part file; the relaunch answers only the rest, on both ranks, and merges everything in input order."""
    lines = reference.splitlines(keepends=True)
    out = tmp_path / "answers.jsonl"
    out.write_text(lines[0] + lines[1][:30])
    (tmp_path / "answers.jsonl.part1").write_text(lines[2])
    proc = accelerate_launch("describe", str(folder), "--out", str(out), "--model", str(checkpoint),
                             "--batch-size", "1", "--max-new-tokens", NEW)
    assert proc.returncode != 0  # the broken file is an error row: every rank exits 1 (the launcher then reports)
    assert str(REPO_ROOT / "src") not in proc.stderr, proc.stderr[-3000:]  # no traceback through our code
    assert out.read_text() == reference
    assert not list(tmp_path.glob("answers.jsonl.part*"))
    # Pending: b_photo, d_broken, e_photo -> batches 0, 1, 2 of size 1: rank 0 takes 0 and 2, rank 1 takes 1.
    assert "wrote 2 line(s) to " + str(out) + ".part0" in proc.stderr, proc.stderr[-3000:]
    assert "wrote 1 line(s) to " + str(out) + ".part1" in proc.stderr, proc.stderr[-3000:]


def test_accelerate_eval_matches_the_single_process_run(tmp_path, folder, checkpoint):
    from videollava_hf.cli import main

    data = tmp_path / "qa.jsonl"
    names = ["a_clip.mp4", "b_photo.jpg", "c_clip.mp4", "e_photo.jpg"]
    data.write_text("".join(json.dumps({"id": f"q{i}", ("image" if n.endswith(".jpg") else "video"): str(folder / n),
                                        "question": "Colour?", "answer": "red"}) + "\n" for i, n in enumerate(names)))
    common = ["--model", str(checkpoint), "--data", str(data), "--max-new-tokens", "3", "--batch-size", "1",
              "--no-progress"]
    assert main(["eval", *common, "--out", str(tmp_path / "single")]) == 0
    proc = accelerate_launch("eval", *common, "--out", str(tmp_path / "sharded"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = (tmp_path / "single" / "predictions.jsonl").read_text()
    assert (tmp_path / "sharded" / "predictions.jsonl").read_text() == single
    assert sum(line.startswith("samples: 4") for line in proc.stdout.splitlines()) == 1  # rank 0 reports once
    metrics = json.loads((tmp_path / "sharded" / "metrics.json").read_text())
    assert metrics["count"] == 4 and metrics["accuracy"] == json.loads(
        (tmp_path / "single" / "metrics.json").read_text())["accuracy"]


# --- the pipeline on a list ---------------------------------------------------------------------------------------


def test_pipeline_on_a_list_records_a_bad_item_and_answers_the_others(folder, checkpoint):
    from videollava_hf.models.videollava.pipeline_video_text_to_text import VideoTextToTextPipeline, load_processor
    from videollava_hf import VideoLlavaForConditionalGeneration

    model = VideoLlavaForConditionalGeneration.from_pretrained(checkpoint).eval()
    pipe = VideoTextToTextPipeline(model=model, processor=load_processor(checkpoint))
    videos = [str(folder / "a_clip.mp4"), str(folder / "d_broken.mp4"), str(folder / "c_clip.mp4")]
    options = {"max_new_tokens": 4, "do_sample": False, "return_full_text": False}
    with pytest.raises(ValueError, match="d_broken.mp4"):
        pipe(text=["What?"] * 3, videos=videos, batch_size=2, **options)  # the default still raises
    for batch_size in (1, 2, 3):
        out = pipe(text=["What?"] * 3, videos=videos, batch_size=batch_size, on_error="record", **options)
        assert "d_broken.mp4" in out[1][0]["error"] and "generated_text" not in out[1][0]
        alone = [pipe(text="What?", videos=v, **options)[0]["generated_text"] for v in (videos[0], videos[2])]
        assert [out[0][0]["generated_text"], out[2][0]["generated_text"]] == alone, batch_size
    single = pipe(text="What?", videos=videos[1], on_error="record", **options)
    assert "d_broken.mp4" in single[0]["error"]
