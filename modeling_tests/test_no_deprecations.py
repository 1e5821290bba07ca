"""Our main paths trigger no Transformers deprecation: no FutureWarning / DeprecationWarning, and no "deprecated"
message on Transformers' logger, on whichever release runs the suite (CI runs it on the newest admitted and the floor).

The paths run in a fresh interpreter: Transformers logs many deprecations once per process (`warning_once`) and
Python shows a warning once per call site, so a check inside the test process could miss one that an earlier test
already used up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent(
    r"""
    import json, logging, sys, tempfile, warnings
    from pathlib import Path

    caught, logged = [], []

    class Capture(logging.Handler):
        def emit(self, record):
            logged.append(f"{record.name}: {record.getMessage()}")

    logging.getLogger("transformers").addHandler(Capture(level=logging.DEBUG))
    warnings.simplefilter("always")
    done = []

    def record(message, category, filename, lineno, file=None, line=None):
        caught.append({"category": category.__name__, "message": str(message), "where": f"{filename}:{lineno}",
                       "step": done[-1] if done else "import"})

    warnings.showwarning = record

    import numpy as np
    import torch
    from transformers import AutoModel, AutoModelForImageTextToText, AutoProcessor, pipeline

    import videollava_hf
    from videollava_hf import VideoLlavaForConditionalGeneration
    from videollava_hf.inference.chat import ChatSession
    from videollava_hf.models.videollava.pipeline_video_text_to_text import TASK, register_pipeline
    from videollava_hf.testing.tiny import tiny_config, tiny_processor, tiny_tokenizer

    torch.manual_seed(0)
    tokenizer = tiny_tokenizer()
    config = tiny_config(tokenizer, num_frames=2)
    model = VideoLlavaForConditionalGeneration(config).eval()
    processor = tiny_processor(config, tokenizer)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    video = rng.integers(0, 256, (6, 40, 48, 3), dtype=np.uint8)
    text = "USER: <image> <video>\nWhat is this? ASSISTANT:"

    done.append("processor call")
    inputs = processor(text=text, images=image, videos=video, return_tensors="pt")
    done.append("forward")
    with torch.no_grad():
        out = model(**inputs)
        model(**inputs, return_dict=False)
        model.get_image_features(inputs["pixel_values"]).pooler_output
        step = model(input_ids=inputs["input_ids"][:, -1:], **{videollava_hf.models.videollava._compat.CACHE_NAME:
                     out.get(videollava_hf.models.videollava._compat.CACHE_NAME)})
    done.append("generate")
    with torch.no_grad():
        model.generate(**inputs, max_new_tokens=3, do_sample=False)
        model.generate(**inputs, max_new_tokens=3, do_sample=False, cache_implementation="static")
    folder = Path(tempfile.mkdtemp())
    done.append("save/load")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    VideoLlavaForConditionalGeneration.from_pretrained(folder)
    AutoModelForImageTextToText.from_pretrained(folder)
    AutoModel.from_pretrained(folder)
    AutoProcessor.from_pretrained(folder)
    done.append("pipeline")
    register_pipeline()
    pipe = pipeline(TASK, model=str(folder))
    pipe(videos=video, text="What happens?", max_new_tokens=3)
    done.append("ChatSession")
    chat = ChatSession(model, processor, video=video)
    chat.ask("What happens?", max_new_tokens=3)
    chat.ask("And then?", max_new_tokens=3)
    done.append("LoRA (peft)")
    try:
        import peft  # noqa: F401
    except ImportError:
        done.append("LoRA skipped: peft not installed")
    else:
        from videollava_hf.training.stages import apply_lora
        apply_lora(VideoLlavaForConditionalGeneration(config))
    print(json.dumps({"caught": caught, "logged": logged, "done": done}))
    """
)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300,
                         cwd=tmp_path_factory.mktemp("deprecations"))
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_every_main_path_ran(report):
    assert report["done"][:7] == ["processor call", "forward", "generate", "save/load", "pipeline", "ChatSession",
                                  "LoRA (peft)"]


def test_no_future_or_deprecation_warnings(report):
    deprecations = [w for w in report["caught"] if w["category"] in ("FutureWarning", "DeprecationWarning")]
    assert deprecations == []


def test_no_deprecation_message_on_transformers_logger(report):
    assert [m for m in report["logged"] if "deprecat" in m.lower()] == []
