"""Benchmark: memory and time of converting an original-layout Video-LLaVA checkpoint.

Generates (once, cached in ``<repo>/.bench_cache/convert_original/``) a synthetic checkpoint in the ORIGINAL layout
with the real key names and 7B widths: both LanguageBind ViT-L/14 towers in full (24 layers, the video tower with
temporal attention), the projector, Vicuna-7B's embeddings and LM head, and ``--llm-layers`` of its 32 decoder layers
(default 2, ~2.5 GB in float16), saved as two ``pytorch_model-*.bin`` shards with an index, a LLaVA-style config.json
and a 32000-token tokenizer. Then it converts it with ``videollava-hf convert`` in a fresh subprocess and reports the
subprocess's peak RSS (``VmHWM``) and wall time, next to the largest input and output shard sizes and the
memory a bare ``import videollava_hf`` takes. Peak RSS counts the pages of the memory-mapped ``.bin`` shard that the
converter touches.

Usage::

    python benchmarks/bench_convert.py [--llm-layers 2] [--cast] [--update-docs docs/performance.md] [--clean]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from videollava_hf import VideoLlavaConfig  # noqa: E402
from videollava_hf.conversion.common import expected_state_shapes  # noqa: E402

CACHE = REPO / ".bench_cache" / "convert_original"
SECTION = "## Checkpoint conversion"
VOCAB = 32000
TEXT_7B = {
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-5,
}


def original_name(key: str) -> str:
    """Our key -> the original release's name (the layout the benchmark checkpoint is written in)."""
    for ours, original in (
        ("model.image_tower.", "model.image_tower.image_tower."),
        ("model.video_tower.", "model.video_tower.video_tower."),
        ("model.multi_modal_projector.linear_1.", "model.mm_projector.0."),
        ("model.multi_modal_projector.linear_2.", "model.mm_projector.2."),
        ("model.language_model.", "model."),
    ):
        if key.startswith(ours):
            return original + key[len(ours) :]
    return key


def write_tokenizer(directory: Path) -> None:
    """A 32000-token word-level tokenizer with Llama's <unk>/<s>/</s> ids (the converter only needs its size)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"w{i}": i for i in range(3, VOCAB)}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>").save_pretrained(
        directory
    )


def generate(directory: Path, llm_layers: int) -> None:
    """Write the synthetic original checkpoint: shard 1 = towers + projector, shard 2 = the language model."""
    config = VideoLlavaConfig(
        text_config={"model_type": "llama", **TEXT_7B, "num_hidden_layers": llm_layers, "vocab_size": VOCAB}
    )
    shapes = {original_name(k): s for k, s in expected_state_shapes(config).items()}
    tower_keys = sorted(k for k in shapes if "_tower." in k or "mm_projector" in k)
    parts = [tower_keys, sorted(set(shapes) - set(tower_keys))]
    directory.mkdir(parents=True, exist_ok=True)
    weight_map = {}
    g = torch.Generator().manual_seed(0)
    for i, keys in enumerate(parts, start=1):
        name = f"pytorch_model-{i:05d}-of-{len(parts):05d}.bin"
        state = {k: (torch.randn(shapes[k], generator=g) * 0.02).half() for k in keys}
        torch.save(state, directory / name)
        weight_map.update({k: name for k in keys})
        del state
    total = sum((directory / n).stat().st_size for n in set(weight_map.values()))
    (directory / "pytorch_model.bin.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1)
    )
    original = {
        "architectures": ["LlavaLlamaForCausalLM"],
        "model_type": "llava",
        **TEXT_7B,
        "num_hidden_layers": llm_layers,
        "hidden_act": "silu",
        "vocab_size": VOCAB,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
        "rope_scaling": None,
        "tie_word_embeddings": False,
        "torch_dtype": "float16",
        "mm_image_tower": "LanguageBind/LanguageBind_Image",
        "mm_video_tower": "LanguageBind/LanguageBind_Video_merge",
        "mm_projector_type": "mlp2x_gelu",
        "mm_vision_select_layer": -2,
        "mm_vision_select_feature": "patch",
        "mm_hidden_size": 1024,
        "mm_use_im_start_end": False,
        "mm_use_im_patch_token": False,
        "image_aspect_ratio": "pad",
    }
    (directory / "config.json").write_text(json.dumps(original, indent=1))
    write_tokenizer(directory)
    (directory / "READY").write_text(str(llm_layers))


# Peak RSS = VmHWM of the child's own address space. (ru_maxrss would not do: Linux carries the parent's high-water
# mark across fork + exec, so every child would report at least the benchmark process's own peak.)
_CHILD = """
import resource, sys, time
start = time.perf_counter()
from videollava_hf.cli import main
code = main(sys.argv[1:]) if len(sys.argv) > 1 else 0
hwm = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
usage = resource.getrusage(resource.RUSAGE_SELF)
print("BENCH", code, time.perf_counter() - start, usage.ru_utime + usage.ru_stime, hwm)
"""


def run_child(args: list[str]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, peak RSS bytes) of `videollava-hf ARGS` (no ARGS: only the imports), in a fresh
    interpreter."""
    env = {"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"}
    command = [sys.executable, "-c", _CHILD, *args]
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    line = next((text for text in result.stdout.splitlines() if text.startswith("BENCH")), None)
    if line is None or line.split()[1] != "0":
        raise RuntimeError(f"conversion failed:\n{result.stdout}\n{result.stderr}")
    _, _, seconds, cpu, rss = line.split()
    return float(seconds), float(cpu), int(rss)


def gb(n: int) -> str:
    return f"{n / 1e9:.2f}"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                cpu = line.split(":", 1)[1].strip()
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, {platform.system()} {platform.release()}"


def run(llm_layers: int, cast: bool) -> str:
    if not (CACHE / "READY").is_file() or (CACHE / "READY").read_text() != str(llm_layers):
        shutil.rmtree(CACHE, ignore_errors=True)
        print(f"generating the synthetic checkpoint in {CACHE} ...", flush=True)
        generate(CACHE, llm_layers)
    shards = sorted(CACHE.glob("pytorch_model-*.bin"))
    total_in = sum(s.stat().st_size for s in shards)
    largest_in = max(s.stat().st_size for s in shards)
    load_before = os.getloadavg()[0]
    import_seconds, _, import_rss = run_child([])
    rows = []
    variants = [("float16 (as stored)", [])] + ([("cast to bfloat16", ["--dtype", "bfloat16"])] if cast else [])
    for label, extra in variants:
        with tempfile.TemporaryDirectory(dir=REPO / ".bench_cache") as tmp:
            out = Path(tmp) / "converted"
            seconds, cpu, rss = run_child(
                ["convert", str(CACHE), str(out), "--layout", "original", "--quiet", "--no-model-card", *extra]
            )
            index = json.loads((out / "model.safetensors.index.json").read_text())
            out_shards = [out / n for n in set(index["weight_map"].values())]
            largest_out = max(s.stat().st_size for s in out_shards)
        budget = 1.5 * largest_in + largest_out
        cells = [
            label,
            f"{gb(total_in)} ({len(shards)} shards)",
            gb(largest_in),
            gb(largest_out),
            gb(rss),
            gb(rss - import_rss),
            gb(int(budget)),
            "yes" if rss <= budget else "NO",
            f"{seconds:.1f}",
            f"{cpu:.1f}",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    load_after = os.getloadavg()[0]
    header = [
        "output dtype",
        "input (GB)",
        "largest input shard (GB)",
        "largest output shard (GB)",
        "peak RSS (GB)",
        "peak RSS - import (GB)",
        "budget (GB)",
        "within budget",
        "wall time (s)",
        "CPU time (s)",
    ]
    table = "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *rows])
    return REPORT.format(
        section=SECTION,
        layers=llm_layers,
        today=datetime.date.today().isoformat(),
        machine=machine(),
        import_gb=gb(import_rss),
        import_s=f"{import_seconds:.1f}",
        load_before=f"{load_before:.1f}",
        load_after=f"{load_after:.1f}",
        table=table,
    )


REPORT = """{section}

`benchmarks/bench_convert.py --llm-layers {layers}`, {today}, on {machine}.

A synthetic checkpoint in the original layout (real key names; both ViT-L/14 towers with temporal attention, the
projector, Vicuna-7B's embeddings and LM head and {layers} of its 32 decoder layers, float16) is converted by
`videollava-hf convert` in a fresh process. Peak RSS is that process's high-water mark (`VmHWM`), which includes the
memory-mapped input pages it reads; a bare `import videollava_hf` accounts for {import_gb} GB and {import_s} s of it
(both columns include it). Budget = 1.5 x largest input shard + largest output shard. Load average: {load_before}
before, {load_after} after the run; the machine is shared, so wall times vary with other jobs, memory does not.

{table}

The converter holds at most one input shard at a time (memory-mapped `.bin`, read tensor by tensor) and writes each
output shard before loading the next input shard, so memory follows the shard size, not the model size. Beyond the
mapped shard, the language-model shard allocates the extended embedding and LM-head tables (2 x 32003 x 4096 float16
= 0.52 GB), and a dtype cast holds the cast copy of one output shard until it is written (a smaller
`--max-shard-size` lowers that part). For the real LanguageBind/Video-LLaVA-7B (two `.bin` shards, about 15 GB in
all) expect roughly its largest shard plus the import overhead (extrapolated from this table, not measured on the
real files).
"""


def update_docs(markdown: str, target: Path) -> None:
    """Insert or replace this benchmark's section in `target`, leaving the other sections alone."""
    text = target.read_text() if target.exists() else "# Performance\n"
    start = text.find(SECTION)
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + markdown
    else:
        end = text.find("\n## ", start + len(SECTION))
        rest = "" if end == -1 else "\n" + text[end + 1 :]
        text = text[:start] + markdown.rstrip("\n") + "\n" + rest
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--llm-layers", type=int, default=2, help="Vicuna decoder layers to include (2 -> ~2.5 GB)")
    parser.add_argument("--cast", action="store_true", help="also measure a conversion that casts to bfloat16")
    parser.add_argument("--update-docs", type=Path, help="write the section into this markdown file")
    parser.add_argument("--clean", action="store_true", help="delete the generated checkpoint afterwards")
    args = parser.parse_args()
    start = time.perf_counter()
    markdown = run(args.llm_layers, args.cast)
    print(markdown)
    print(f"(benchmark wall time {time.perf_counter() - start:.0f} s)")
    if args.update_docs:
        update_docs(markdown, args.update_docs)
    if args.clean:
        shutil.rmtree(CACHE, ignore_errors=True)


if __name__ == "__main__":
    main()
