"""Tiny, randomly initialised Video-LLaVA parts for tests, benchmarks and the demo model (no downloads).

The shapes keep every structural feature of the real model (two towers, temporal attention over frames, CLS
handling, a Llama language model, `<image>` / `<video>` / `<pad>` tokens), at a size that runs in milliseconds.
"""

from __future__ import annotations

from functools import lru_cache

from ..models.videollava.configuration_videollava import VideoLlavaConfig
from ..models.videollava.processing_videollava import VideoLlavaHfProcessor
from .tokenizers import build_bpe_tokenizer

TINY_CORPUS = [
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions.",
    "USER: What happens in the video? ASSISTANT: A red circle moves to the left.</s>",
    "USER: What colour is the shape? ASSISTANT: blue</s> USER: How many shapes are there? ASSISTANT: three</s>",
    "Which way does the square move? It moves up, down, left or right, or it grows, shrinks or stays still.",
    "Describe the image in detail. The picture shows a yellow triangle, a green square and a purple circle.",
    "0 1 2 3 4 5 6 7 8 9 yes no one two three seconds frames video image",
]


@lru_cache(maxsize=4)
def _cached_tokenizer(vocab_size: int):
    return build_bpe_tokenizer(TINY_CORPUS, vocab_size=vocab_size)


def tiny_tokenizer(vocab_size: int = 320):
    """A small byte-level BPE tokenizer with `<s>`, `</s>`, `<pad>`, `<image>`, `<video>` (a fresh copy)."""
    import copy

    return copy.deepcopy(_cached_tokenizer(vocab_size))


def tiny_config(tokenizer=None, **overrides) -> VideoLlavaConfig:
    """A VideoLlavaConfig with 32-px towers (patch 8 -> 16 patches, 17 tokens per frame) and a 2-layer Llama.

    Keyword overrides go to VideoLlavaConfig; `vision=` / `text=` dicts update the sub-configs."""
    tokenizer = tokenizer or tiny_tokenizer()
    vision = {
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 4,
        "image_size": 32, "patch_size": 8, "hidden_act": "gelu", "layer_norm_eps": 1e-5,
    }
    vision.update(overrides.pop("vision", {}))
    text = {
        "model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": len(tokenizer),
        "max_position_embeddings": 2048, "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
    }
    text.update(overrides.pop("text", {}))
    settings = {
        "image_token_index": tokenizer.convert_tokens_to_ids("<image>"),
        "video_token_index": tokenizer.convert_tokens_to_ids("<video>"),
        "num_frames": 8,
        "pad_token_id": tokenizer.pad_token_id,
    }
    settings.update(overrides)
    return VideoLlavaConfig(vision_config=vision, text_config=text, **settings)


def tiny_processor(config: VideoLlavaConfig | None = None, tokenizer=None, **kwargs) -> VideoLlavaHfProcessor:
    tokenizer = tokenizer or tiny_tokenizer()
    config = config or tiny_config(tokenizer)
    return VideoLlavaHfProcessor.from_model_config(config, tokenizer, **kwargs)


__all__ = ["tiny_config", "tiny_processor", "tiny_tokenizer", "TINY_CORPUS"]
