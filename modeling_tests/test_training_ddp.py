"""Multi-process training for real: `accelerate launch` with two CPU processes (DDP over gloo) running the unchanged
training script on the tiny model. Each rank writes its own step log (`--per_rank_log`), which is how the test
sees that both ranks stepped on different data, and which process was allowed to save."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from videollava_hf import VideoLlavaForConditionalGeneration
from videollava_hf.demo.synthetic import write_dataset

REPO_ROOT = Path(__file__).resolve().parents[1]
STEPS = 4


def accelerate_command() -> list[str]:
    exe = shutil.which("accelerate")
    return [exe, "launch"] if exe else [sys.executable, "-m", "accelerate.commands.launch"]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    data = tmp_path_factory.mktemp("ddp_data")
    json_path = write_dataset(data, num_videos=12, num_images=4, seed=1, num_frames=8, size=32)
    out = tmp_path_factory.mktemp("ddp_run")
    command = accelerate_command() + [
        "--config_file", str(REPO_ROOT / "recipes" / "accelerate" / "ddp_cpu.yaml"),
        "-m", "videollava_hf.training",
        "--config", str(REPO_ROOT / "recipes" / "tiny.yaml"),
        "--data_path", str(json_path), "--media_root", str(data), "--output_dir", str(out),
        "--dataset_cache_dir", str(out / "datasets_cache"),
        "--max_steps", str(STEPS), "--save_steps", str(STEPS), "--per_rank_log", "true", "--disable_tqdm", "true",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"accelerate launch failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return out, proc


def rank_log(out: Path, rank: int) -> list[dict]:
    path = out / "rank_logs" / f"rank{rank}.jsonl"
    assert path.is_file(), f"rank {rank} wrote no step log"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_both_ranks_step_with_finite_losses(ddp_run):
    out, _ = ddp_run
    logs = [rank_log(out, rank) for rank in (0, 1)]
    for rank, log in enumerate(logs):
        assert [r["global_step"] for r in log] == list(range(STEPS))
        assert {r["world_size"] for r in log} == {2} and {r["rank"] for r in log} == {rank}
        assert {r["distributed_type"] for r in log} == {"DistributedType.MULTI_CPU"}
        assert all(math.isfinite(r["local_loss"]) for r in log)
    # Different shards of the data: the per-rank losses differ.
    assert [r["local_loss"] for r in logs[0]] != [r["local_loss"] for r in logs[1]]
    assert not (out / "rank_logs" / "rank2.jsonl").exists()


def test_checkpoint_saved_once_by_rank_zero(ddp_run):
    out, proc = ddp_run
    assert {r["should_save"] for r in rank_log(out, 0)} == {True}
    assert {r["should_save"] for r in rank_log(out, 1)} == {False}
    assert sorted(p.name for p in out.glob("checkpoint-*")) == [f"checkpoint-{STEPS}"]
    state = json.loads((out / f"checkpoint-{STEPS}" / "trainer_state.json").read_text())
    assert state["global_step"] == STEPS
    losses = [h["loss"] for h in state["log_history"] if "loss" in h]
    assert len(losses) == STEPS and all(math.isfinite(v) for v in losses)
    # Exactly one process printed the final metrics line (rank 0 only).
    assert sum(1 for line in proc.stdout.splitlines() if line.startswith('{"output_dir"')) == 1
    VideoLlavaForConditionalGeneration.from_pretrained(out / f"checkpoint-{STEPS}")
    VideoLlavaForConditionalGeneration.from_pretrained(out)
