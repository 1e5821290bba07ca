"""The shipped demo model: a tiny Video-LLaVA trained by this project on its synthetic shapes world.

Real Video-LLaVA-7B weights cannot be bundled, so `videollava-hf ask` defaults to a model that really answers
questions about `videollava_hf.demo.synthetic` videos and images (colour, shape, direction of motion, whether it
moves, how many shapes). This module holds its architecture, its tokenizer, the bundled sample clip and the
held-out evaluation; `demo/build_demo_model.py` trains it with the project's own training code.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..evaluation.metrics import normalize_answer  # the one answer normaliser (re-exported)
from ..models.videollava.configuration_videollava import VideoLlavaConfig
from ..models.videollava.processing_videollava import SYSTEM_PROMPT, VideoLlavaHfProcessor
from ..testing.tokenizers import build_bpe_tokenizer

DEMO_IMAGE_SIZE = 48  # tower input: 48 px, patch 8 -> 6 x 6 patches (+ CLS) per frame
DEMO_NUM_FRAMES = 8


def demo_model_dir() -> Path:
    """Where the packaged demo model lives (inside the installed package)."""
    return Path(__file__).resolve().parent / "model"


def sample_video_path() -> Path:
    """The bundled sample clip (a synthetic scene; its card lists what it shows)."""
    return Path(__file__).resolve().parent / "assets" / "sample_shapes.mp4"


def demo_corpus() -> list[str]:
    """Text the demo tokenizer is trained on: the template, every question paraphrase and every answer."""
    from . import synthetic as syn

    texts = [SYSTEM_PROMPT, "USER: ASSISTANT: </s>"]
    for colour in syn.COLOURS:
        for shape in syn.SHAPES:
            for motion in syn.MOTIONS:
                for count in (1, 2, 3):
                    if count > 1 and motion not in syn.MULTI_SHAPE_MOTIONS:
                        continue
                    spec = syn.SceneSpec(colour=colour, shape=shape, motion=motion, count=count)
                    for qtype in syn.QUESTION_TYPES:
                        for variant in range(3):
                            texts.append(f"USER: {syn.question_for(spec, qtype, variant)} ASSISTANT: "
                                         f"{syn.answer_for(spec, qtype)}</s>")
    return texts


def demo_tokenizer(vocab_size: int = 480):
    return build_bpe_tokenizer(demo_corpus(), vocab_size=vocab_size, model_max_length=1024)


def demo_config(tokenizer) -> VideoLlavaConfig:
    """Small towers (48 px, 3 layers, temporal attention on) and a 2-layer Llama; about 0.96M parameters."""
    vision = {
        "hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 3, "num_attention_heads": 4,
        "image_size": DEMO_IMAGE_SIZE, "patch_size": 8, "hidden_act": "gelu", "layer_norm_eps": 1e-5,
    }
    text = {
        "model_type": "llama", "hidden_size": 128, "intermediate_size": 384, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": len(tokenizer),
        "max_position_embeddings": 1024, "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id, "tie_word_embeddings": False,
    }
    return VideoLlavaConfig(
        vision_config=vision, text_config=text, num_frames=DEMO_NUM_FRAMES,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        pad_token_id=tokenizer.pad_token_id, video_temporal_attention=True,
    )


def demo_processor(config: VideoLlavaConfig, tokenizer) -> VideoLlavaHfProcessor:
    return VideoLlavaHfProcessor.from_model_config(config, tokenizer)


@torch.no_grad()
def evaluate_synthetic(model, processor, records: list[dict[str, Any]], media: dict[str, np.ndarray],
                       batch_size: int = 16, max_new_tokens: int = 6) -> dict[str, Any]:
    """Greedy answers to each record's first question (the one answer path, `inference.generate`); accuracy per
    question type (the one normalised match, `evaluation.metrics.normalize_answer`)."""
    from ..inference.generate import GenerationSettings, Request, answer

    settings = GenerationSettings(max_new_tokens=max_new_tokens)
    correct: dict[str, int] = defaultdict(int)
    total: dict[str, int] = defaultdict(int)
    for kind in ("video", "image"):
        rows = [r for r in records if kind in r]
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            requests = [Request(text=r["conversations"][0]["value"].split("\n", 1)[1], name=r[kind],
                                **{kind: media[r[kind]]}) for r in chunk]
            for r, result in zip(chunk, answer(model, processor, requests, settings)):
                qtype = r["question_type"]
                total[qtype] += 1
                prediction = result.get("prediction")
                correct[qtype] += int(prediction is not None
                                      and normalize_answer(prediction) == normalize_answer(r["conversations"][1]["value"]))
    accuracy = {k: correct[k] / total[k] for k in sorted(total)}
    overall = sum(correct.values()) / max(sum(total.values()), 1)
    return {"accuracy": accuracy, "overall": overall, "counts": dict(total)}


TOY_MODEL_NOTICE = (
    "Note: the default model is a toy demo (about 1M parameters) that knows only the synthetic shapes of "
    "videollava_hf.demo.synthetic (coloured circles, squares and triangles that move); about other media its answers "
    "mean nothing. Pass a real checkpoint with --model, e.g. --model LanguageBind/Video-LLaVA-7B-hf."
)
# Media the demo model does know: the bundled sample clip and files written by videollava_hf.demo.synthetic.
_SYNTHETIC_NAME = re.compile(r"synth-s\d+-(?:video|image)-\d+\.(?:mp4|png)")


def is_demo_model(model: str | Path | None) -> bool:
    """True for the bundled demo model: None (the CLI's default) or a path to `demo_model_dir()`."""
    if model is None:
        return True
    try:
        return Path(model).expanduser().resolve() == demo_model_dir().resolve()
    except OSError:
        return False


def is_synthetic_media(path: str | Path) -> bool:
    """True for the bundled sample clip and for files named the way `videollava_hf.demo.synthetic` writes them."""
    file = Path(path).expanduser()
    try:
        if file.resolve() == sample_video_path().resolve():
            return True
    except OSError:
        return False
    return bool(_SYNTHETIC_NAME.fullmatch(file.name))


def toy_model_notice(model: str | Path | None, media) -> str | None:
    """The notice to show once (stderr, or the web demo's page) when the demo model is asked about media from outside
    its synthetic world; None when no notice is due. `model`: the model path or id (None: the default demo model);
    `media`: one path or several (None or empty: a text-only chat, no notice)."""
    if not is_demo_model(model) or not media:
        return None
    paths = [media] if isinstance(media, (str, Path)) else list(media)
    return TOY_MODEL_NOTICE if any(not is_synthetic_media(p) for p in paths) else None



__all__ = [
    "TOY_MODEL_NOTICE",
    "is_demo_model",
    "is_synthetic_media",
    "toy_model_notice",
    "DEMO_IMAGE_SIZE",
    "DEMO_NUM_FRAMES",
    "demo_config",
    "demo_corpus",
    "demo_model_dir",
    "demo_processor",
    "demo_tokenizer",
    "evaluate_synthetic",
    "normalize_answer",
    "sample_video_path",
]
