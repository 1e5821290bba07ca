"""What the prompt encoding does to answers: the same tiny model fed the original's ids and the built-in port's.

A tiny random Video-LLaVA (the test configs: 32-px towers, a 2-layer Llama) with a Llama SentencePiece tokenizer
trained here, for `legacy` true and false. For each prompt (image or video, one or two turns, with and without the
system prompt) it encodes with `prompt_encoding="original"` and `"transformers"`, and reports the id difference, the
largest next-token logit difference, whether the top-1 token agrees, and whether greedy continuations diverge.

    PYTHONPATH=src python benchmarks/prompt_encoding_effect.py [--new-tokens 16] [--init-std 0.2]

`--init-std` re-draws every weight from N(0, std) (norms around 1): Transformers' default init (0.02) gives a
nearly flat output distribution, on which greedy decoding says little.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import numpy as np
import torch

from videollava_hf import VideoLlavaForConditionalGeneration
from videollava_hf.models.videollava.processing_videollava import SYSTEM_PROMPT
from videollava_hf.testing.tiny import tiny_config, tiny_processor
from videollava_hf.testing.tokenizers import build_sentencepiece_model

CORPUS = [
    SYSTEM_PROMPT,
    "USER: What happens in the video? ASSISTANT: A red circle moves to the left.",
    "USER: What colour is the shape? ASSISTANT: blue. How many shapes are there? Three shapes.",
    "Describe the image in detail. Compare them. Why is this funny? Then what? 0 1 2 3 4 5 6 7 8 9",
] * 4
QUESTIONS = ["What happens in the video?", "Describe the image in detail.", "How many shapes are there?",
             "What colour is the shape?", "Why is this funny?", "Compare them."]


def conversations():
    """(name, messages, add_system_prompt, media kind)."""
    for i, question in enumerate(QUESTIONS):
        kind = "video" if i % 2 == 0 else "image"
        yield f"{kind}-{i}", [{"role": "user", "content": [{"type": kind}, {"type": "text", "text": question}]}], \
            i % 3 != 2, kind
    yield "multi-turn", [
        {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What happens?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A red circle moves to the left."}]},
        {"role": "user", "content": [{"type": "text", "text": "Why is this funny?"}]},
    ], True, "video"


def build(legacy: bool, directory: Path, init_std: float):
    from transformers import LlamaTokenizer

    (directory / "tokenizer.model").write_bytes(build_sentencepiece_model(CORPUS))
    tok = LlamaTokenizer.from_pretrained(str(directory), legacy=legacy, add_bos_token=True)
    tok.add_special_tokens({"extra_special_tokens": ["<image>", "<video>"], "pad_token": "<pad>"})
    config = tiny_config(tok, num_frames=8)
    torch.manual_seed(0)
    model = VideoLlavaForConditionalGeneration(config).eval()
    if init_std:
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(1 + torch.randn_like(p) * init_std if "norm" in name and name.endswith("weight")
                        else torch.randn_like(p) * init_std)
    return model, tiny_processor(config, tok)


@torch.no_grad()
def measure(model, processor, new_tokens: int) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for name, messages, system, kind in conversations():
        prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False,
                                               add_system_prompt=system)
        media = {"videos": [rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)]} if kind == "video" else \
            {"images": [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)]}
        out = {}
        for mode in ("original", "transformers"):
            inputs = processor(text=prompt, prompt_encoding=mode, **media)
            logits = model(**inputs).logits[0, -1]
            generated = model.generate(**inputs, max_new_tokens=new_tokens, do_sample=False)
            out[mode] = (inputs["input_ids"][0].tolist(), logits, generated[0, inputs["input_ids"].shape[1]:].tolist())
        (ids_o, lo, go), (ids_t, lt, gt) = out["original"], out["transformers"]
        first = next((i for i, (a, b) in enumerate(zip(go, gt)) if a != b), None)
        rows.append({
            "prompt": name, "ids_differ": ids_o != ids_t, "length": (len(ids_o), len(ids_t)),
            "max_dlogit": float((lo - lt).abs().max()), "logit_std": float(lo.std()),
            "top1_same": int(lo.argmax()) == int(lt.argmax()), "diverge_at": first,
        })
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--init-std", type=float, default=0.2)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, init std {args.init_std}, "
          f"{args.new_tokens} greedy tokens")
    for legacy in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            model, processor = build(legacy, Path(tmp), args.init_std)
            rows = measure(model, processor, args.new_tokens)
        differ = [r for r in rows if r["ids_differ"]]
        diverged = [r for r in rows if r["diverge_at"] is not None]
        print(f"\nlegacy={legacy}: ids differ in {len(differ)}/{len(rows)} prompts; greedy output diverges in "
              f"{len(diverged)}/{len(rows)}")
        print("| prompt | ids (original / transformers) | max abs next-token logit diff | logit std | top-1 same "
              "| greedy diverges at |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            at = "-" if r["diverge_at"] is None else f"token {r['diverge_at']}"
            print(f"| {r['prompt']} | {r['length'][0]} / {r['length'][1]} | {r['max_dlogit']:.3f} | "
                  f"{r['logit_std']:.3f} | {'yes' if r['top1_same'] else 'no'} | {at} |")


if __name__ == "__main__":
    main()
