"""Model cards: the YAML metadata must parse and carry the Hub fields, the paper's tables appear only for the
original weights, and the usage snippet written into the card actually runs against a saved checkpoint."""

from __future__ import annotations

import re
import os
from pathlib import Path

import pytest
import torch
import yaml

from videollava_hf import VideoLlavaForConditionalGeneration
from videollava_hf.conversion.modelcard import build_model_card, write_model_card
from videollava_hf.testing.tiny import tiny_config, tiny_processor, tiny_tokenizer

# ../shared/fixtures beside the checkout, or $VIDEOLLAVA_FIXTURES (as conftest's `fixtures_dir`)
FIXTURES = Path(os.environ.get("VIDEOLLAVA_FIXTURES") or Path(__file__).resolve().parents[2] / "shared" / "fixtures")


def split_card(path: Path) -> tuple[dict, str]:
    text = path.read_text()
    match = re.match(r"^---\n(.*?)\n---\n(.*)$", text, flags=re.S)
    assert match, "README.md must start with a YAML block between --- lines"
    return yaml.safe_load(match.group(1)), match.group(2)


def python_blocks(body: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", body, flags=re.S)


def test_original_conversion_card(tmp_path):
    path = write_model_card(tmp_path, source="original", base_model="LanguageBind/Video-LLaVA-7B", model_id="me/vl-7b")
    meta, body = split_card(path)
    assert meta["pipeline_tag"] == "video-text-to-text"
    assert meta["library_name"] == "transformers"
    assert meta["base_model"] == "LanguageBind/Video-LLaVA-7B"
    assert "base_model_relation" not in meta  # a format conversion is none of the Hub's relations
    assert meta["license"] == "llama2"
    assert meta["datasets"] == ["LanguageBind/Video-LLaVA"]
    assert "videollava-hf" in meta["tags"] and "video-llava" in meta["tags"]
    assert "Llama 2 Community License" in body
    # the paper's tables: every benchmark row is present with its accuracy and score
    rows = dict(
        (name, (acc, score))
        for name, acc, score in re.findall(r"^\| ([\w-]+-QA) \| ([\d.]+) \| ([\d.]+) \|$", body, re.M)
    )
    assert set(rows) == {"MSVD-QA", "MSRVTT-QA", "TGIF-QA", "ActivityNet-QA"}
    assert all(0 < float(acc) < 100 and 0 < float(score) <= 5 for acc, score in rows.values())
    assert "MM-Vet" in body and "POPE" in body
    assert 'pipeline("video-text-to-text", model="me/vl-7b")' in body
    assert "@article{lin2023video" in body


@pytest.mark.parametrize(
    "kwargs",
    [
        {"source": "transformers", "base_model": "LanguageBind/Video-LLaVA-7B-hf"},
        {"source": "original", "base_model": "someone/my-video-llava-finetune"},  # not the weights the paper measured
        {"source": "trained"},
    ],
)
def test_paper_results_only_for_the_original_weights(tmp_path, kwargs):
    _, body = split_card(write_model_card(tmp_path, **kwargs))
    assert "MSVD-QA" not in body and "Results reported in the paper" not in body


def test_trained_card_relation_and_license(tmp_path):
    meta, body = split_card(
        write_model_card(
            tmp_path, source="trained", base_model="LanguageBind/Video-LLaVA-7B", datasets=["me/shapes"], tags=["demo"]
        )
    )
    assert meta["base_model_relation"] == "finetune" and meta["license"] == "llama2"
    assert meta["datasets"] == ["me/shapes"] and "demo" in meta["tags"] and "videollava-hf" in meta["tags"]
    meta, _ = split_card(write_model_card(tmp_path, source="trained"))
    assert meta["license"] == "apache-2.0" and "base_model" not in meta and "base_model_relation" not in meta
    assert "datasets" not in meta


def test_card_rejects_bad_metadata(tmp_path):
    with pytest.raises(ValueError, match="base_model_relation"):
        build_model_card(source="trained", base_model="a/b", base_model_relation="converted")
    with pytest.raises(ValueError, match="source"):
        build_model_card(source="downloaded")
    with pytest.raises(ValueError, match="needs a base_model"):
        build_model_card(source="trained", base_model_relation="adapter")
    write_model_card(tmp_path, source="trained")
    with pytest.raises(FileExistsError):
        write_model_card(tmp_path, source="trained", overwrite=False)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "ckpt"
    tok = tiny_tokenizer()
    config = tiny_config(tok)
    torch.manual_seed(0)
    VideoLlavaForConditionalGeneration(config).save_pretrained(out)
    tiny_processor(config, tok).save_pretrained(out)
    write_model_card(out, source="trained", model_id=str(out))
    return out


def test_card_describes_the_checkpoint(tiny_checkpoint):
    _, body = split_card(tiny_checkpoint / "README.md")
    assert "8 frames in every layer" in body  # from its config.json: temporal attention, 8 frames
    assert "hidden 64" in body and "vocabulary 320" in body


def _runnable(block: str, model_dir: Path) -> str:
    video = FIXTURES / "sample_demo_1.mp4"
    assert video.is_file(), f"missing fixture {video}"
    return block.replace("video.mp4", str(video)).replace("max_new_tokens=64", "max_new_tokens=3")


def test_card_raw_model_snippet_runs(tiny_checkpoint):
    _, body = split_card(tiny_checkpoint / "README.md")
    raw = next(b for b in python_blocks(body) if "VideoLlavaForConditionalGeneration" in b)
    namespace: dict = {}
    exec(compile(_runnable(raw, tiny_checkpoint), "card_snippet", "exec"), namespace)
    inputs = namespace["inputs"]
    assert inputs["pixel_values_videos"].shape[:2] == (1, 8)  # the real video was read and sampled
    assert inputs["input_ids"].shape[1] < namespace["output"].shape[1] <= inputs["input_ids"].shape[1] + 3  # generated


def test_card_pipeline_snippet_runs(tiny_checkpoint):
    import videollava_hf  # noqa: F401  (registers the task, once the pipeline has landed)
    from transformers.pipelines import SUPPORTED_TASKS

    if "video-text-to-text" not in SUPPORTED_TASKS:  # the pipeline module exists but is not wired into __init__ yet
        pipeline_module = pytest.importorskip("videollava_hf.models.videollava.pipeline_video_text_to_text")
        pipeline_module.register_pipeline()
    _, body = split_card(tiny_checkpoint / "README.md")
    block = next(b for b in python_blocks(body) if 'pipeline("video-text-to-text"' in b)
    namespace: dict = {}
    exec(
        compile(_runnable(block, tiny_checkpoint).replace("print(pipe(", "result = (pipe("), "card_pipeline", "exec"),
        namespace,
    )
    assert isinstance(namespace["result"], list) and "generated_text" in namespace["result"][0]


def test_card_cli(tiny_checkpoint, tmp_path, capsys):
    import shutil

    from videollava_hf.cli import main

    target = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, target)
    (target / "README.md").unlink()
    code = main(
        [
            "card",
            str(target),
            "--source",
            "trained",
            "--base-model",
            "me/base",
            "--license",
            "mit",
            "--dataset",
            "me/data",
            "--tag",
            "shapes",
            "--model-id",
            "me/tiny",
        ]
    )
    assert code == 0
    meta, body = split_card(target / "README.md")
    assert (meta["license"], meta["base_model"], meta["base_model_relation"]) == ("mit", "me/base", "finetune")
    assert meta["datasets"] == ["me/data"] and "shapes" in meta["tags"] and "me/tiny" in body
    assert main(["card", str(target)]) == 2  # exists, no --overwrite: a usage error
    assert "exists" in capsys.readouterr().err
