"""Hub model cards (README.md with YAML metadata) for checkpoints in this package's format.

Used by the converters, by training code (`write_model_card(out_dir, source="trained", base_model=...)`) and by
`videollava-hf card`. Metadata choices:

- `pipeline_tag: video-text-to-text` — the Hub task the model serves (`import videollava_hf` registers that pipeline).
- `library_name: transformers`, plus the tag `videollava-hf`: the folders load with Transformers' Auto classes
  (`trust_remote_code=True`, the modeling code travels with the weights) or with this package installed, and the
  Hub only offers its "Use this model" snippet and library filter for libraries it knows; `videollava-hf` is not
  one of them, so the tag carries the package's name instead.
- `base_model` (the source repo; pass it when converting a local copy) + `base_model_relation`: the Hub accepts
  the relations adapter / merge / quantized / finetune. A format conversion is none of them, so converted cards set
  `base_model` only and say so in the text; trained cards with a base model use `finetune`.
- `license: llama2` when the base model's name says the weights derive from Vicuna / Llama (the Video-LLaVA
  releases derive from Vicuna-7B v1.5, a Llama 2 fine-tune), whatever the code's licence (Apache-2.0); `other` with
  a note when nothing is known about the source (pass `license=` / `--license`), `apache-2.0` for a model trained
  from scratch. The card names the language model from the checkpoint's config, not from an assumption.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

SOURCES = ("original", "transformers", "trained")
BASE_MODEL_RELATIONS = ("adapter", "merge", "quantized", "finetune")
ORIGINAL_REPO = "LanguageBind/Video-LLaVA-7B"
TRANSFORMERS_REPO = "LanguageBind/Video-LLaVA-7B-hf"
PAPER_URL = "https://arxiv.org/abs/2311.10122"
CODE_URL = "https://github.com/PKU-YuanGroup/Video-LLaVA"
TRAINING_DATASETS = ["LanguageBind/Video-LLaVA"]  # the authors' processed pre-training / tuning data on the Hub
DEFAULT_TAGS = ["videollava-hf", "video-llava", "video-question-answering", "multimodal", "llava"]

# Video-LLaVA paper (arXiv 2311.10122), Table "zero-shot video question answering": accuracy (%) / GPT score (0-5).
PAPER_VIDEO_RESULTS: list[tuple[str, float, float]] = [
    ("MSVD-QA", 70.7, 3.9),
    ("MSRVTT-QA", 59.2, 3.5),
    ("TGIF-QA", 70.0, 4.0),
    ("ActivityNet-QA", 45.3, 3.3),
]
# Same paper, image understanding (Vicuna-7B, 224 px). * = training images of that dataset were seen in training.
PAPER_IMAGE_RESULTS: list[tuple[str, str]] = [
    ("VQAv2", "74.7*"),
    ("GQA", "60.3*"),
    ("VizWiz", "48.1"),
    ("ScienceQA-IMG", "66.4"),
    ("TextVQA", "51.8"),
    ("POPE", "84.4"),
    ("MMBench", "60.9"),
    ("LLaVA-Bench (in the wild)", "73.1"),
    ("MM-Vet", "32.0"),
]

CITATION = """@article{lin2023video,
  title={Video-LLaVA: Learning United Visual Representation by Alignment Before Projection},
  author={Lin, Bin and Zhu, Bin and Ye, Yang and Ning, Munan and Jin, Peng and Yuan, Li},
  journal={arXiv preprint arXiv:2311.10122},
  year={2023}
}"""


# Repos whose weights are known to derive from Vicuna-7B v1.5 (a Llama 2 fine-tune): the releases themselves.
KNOWN_VICUNA_REPOS = (ORIGINAL_REPO.lower(), TRANSFORMERS_REPO.lower())


def _base_names(base_model: str | list[str] | None) -> list[str]:
    return [base_model] if isinstance(base_model, str) else list(base_model or [])


def _is_vicuna_derived(source: str, base_model: str | list[str] | None) -> bool | None:
    """True when the base model's name says Vicuna / Llama (2) / Video-LLaVA, False for a model trained from
    scratch, None when nothing is known (a converted local folder with no `base_model`)."""
    names = _base_names(base_model)
    if any(k in n.lower() for n in names for k in ("video-llava", "vicuna", "llama")):
        return True
    return None if source in ("original", "transformers") else False


def _default_license(source: str, base_model: str | list[str] | None) -> str:
    derived = _is_vicuna_derived(source, base_model)
    return "llama2" if derived else ("other" if derived is None else "apache-2.0")


def build_card_data(
    *,
    source: str,
    base_model: str | list[str] | None = None,
    base_model_relation: str | None = None,
    license: str | None = None,
    datasets: Iterable[str] | None = None,
    tags: Iterable[str] = (),
    model_name: str | None = None,
) -> ModelCardData:
    """The YAML metadata block (see the module docstring for why each field is set as it is)."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}.")
    if base_model_relation is None and source == "trained" and base_model:
        base_model_relation = "finetune"
    if base_model_relation is not None and base_model_relation not in BASE_MODEL_RELATIONS:
        raise ValueError(
            f"base_model_relation must be one of {BASE_MODEL_RELATIONS} (or None), got {base_model_relation!r}."
        )
    if base_model_relation is not None and not base_model:
        raise ValueError("base_model_relation needs a base_model.")
    if datasets is None and source in ("original", "transformers"):
        datasets = TRAINING_DATASETS
    extra: dict[str, Any] = {}
    if base_model_relation:
        extra["base_model_relation"] = base_model_relation
    return ModelCardData(
        library_name="transformers",
        pipeline_tag="video-text-to-text",
        license=license or _default_license(source, base_model),
        base_model=base_model or None,
        datasets=list(datasets) if datasets else None,
        language=["en"],
        tags=list(dict.fromkeys([*DEFAULT_TAGS, *tags])),
        model_name=model_name,
        **extra,
    )


def usage_snippet(model_id: str) -> str:
    """Runnable Python: the `video-text-to-text` pipeline and the raw model + processor."""
    return f'''```python
import videollava_hf  # registers Video-LLaVA and the "video-text-to-text" pipeline with Transformers
from transformers import pipeline

pipe = pipeline("video-text-to-text", model="{model_id}")
print(pipe(videos="video.mp4", text="What is happening in this video?", max_new_tokens=64))
```

Or with the model and processor directly:

```python
import torch
from videollava_hf import VideoLlavaForConditionalGeneration, VideoLlavaHfProcessor

model = VideoLlavaForConditionalGeneration.from_pretrained("{model_id}", dtype="auto")
processor = VideoLlavaHfProcessor.from_pretrained("{model_id}")
question = {{"type": "text", "text": "What is happening in this video?"}}
messages = [{{"role": "user", "content": [{{"type": "video"}}, question]}}]
prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
inputs = processor(text=prompt, videos="video.mp4", return_tensors="pt").to(model.device, model.dtype)
with torch.inference_mode():
    output = model.generate(**inputs, max_new_tokens=64, do_sample=False)
print(processor.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
```

Without this package installed, `AutoModelForImageTextToText.from_pretrained("{model_id}", trust_remote_code=True)`
loads the model from the code stored next to the weights.'''


def _results_section() -> str:
    video = "\n".join(f"| {name} | {acc} | {score} |" for name, acc, score in PAPER_VIDEO_RESULTS)
    names = " | ".join(name for name, _ in PAPER_IMAGE_RESULTS)
    values = " | ".join(value for _, value in PAPER_IMAGE_RESULTS)
    return f"""## Results reported in the paper

These numbers are from the Video-LLaVA paper ([arXiv 2311.10122]({PAPER_URL})), measured by the authors with the
original code on these weights; they were not re-measured for this conversion.

Zero-shot video question answering (accuracy %, GPT-assisted score 0-5):

| Benchmark | Accuracy | Score |
|---|---|---|
{video}

Image understanding (* = the dataset's training images were seen during training):

| {names} |
|{"---|" * len(PAPER_IMAGE_RESULTS)}
| {values} |
"""


def _architecture_section(config: Mapping[str, Any] | None) -> str:
    if not config:
        return ""
    vision, text = config.get("vision_config", {}), config.get("text_config", {})
    if config.get("video_temporal_attention", True):
        video = f"has temporal attention across the {config.get('num_frames', 8)} frames in every layer"
    else:
        video = "runs without temporal attention"
    towers = (
        f"CLIP ViT, {vision.get('num_hidden_layers', '?')} layers, hidden {vision.get('hidden_size', '?')}, "
        f"{vision.get('image_size', '?')} px, patch {vision.get('patch_size', '?')}"
    )
    language = (
        f"{text.get('model_type', 'llama')} with {text.get('num_hidden_layers', '?')} layers, hidden "
        f"{text.get('hidden_size', '?')}, vocabulary {text.get('vocab_size', '?')}"
    )
    act = str(config.get("projector_hidden_act", "gelu")).upper()
    return (
        "## Architecture\n\n"
        f"- Vision: two LanguageBind towers ({towers}); the video tower {video}.\n"
        f"- Projector: Linear - {act} - Linear, shared by images and videos.\n"
        f"- Language model: {language}.\n"
    )


def _provenance_section(
    source: str, base_model: str | list[str] | None, report: Any | None, config: Mapping[str, Any] | None
) -> str:
    if source == "trained":
        base = f"starting from `{base_model}`" if base_model else "from scratch"
        return f"## Training\n\nTrained with `videollava-hf` {base}.\n"
    names = _base_names(base_model) or ([report.source] if report is not None and report.source else [])
    named = "".join(f", `{n}`" for n in names)
    origin = {
        "original": "a checkpoint in the original Video-LLaVA layout (LLaVA-style `.bin` shards)" + named,
        "transformers": "a checkpoint in the layout of Transformers' built-in port" + named,
    }[source]
    lines = [
        "## How this checkpoint was made",
        "",
        f"Format conversion only (no training, no quantization) of {origin} with `videollava-hf convert`. Every",
        "source key was mapped by an explicit rule or dropped by a documented ignore rule; the converter aborts on any",
        "unmatched, missing or mis-shaped weight.",
    ]
    if source == "original":
        size = f" ({report.source_vocab_size} tokens)" if report is not None else ""
        temporal = (config or {}).get("video_temporal_attention", True)
        lines += [
            "",
            f"The original vocabulary{size} gains `<image>`, `<video>` and `<pad>`; their embedding and LM-head rows",
            "are the mean of the existing rows. "
            + ("The video tower keeps LanguageBind's temporal attention." if temporal
               else "The source has no temporal attention in the video tower, so neither has this checkpoint."),
        ]
    else:
        lines += [
            "",
            "The built-in port has no temporal attention in the video tower, so neither has this checkpoint; video",
            "results may differ from the paper's, which were measured with the original code.",
        ]
    if report is not None:
        ignored = sorted(set(getattr(report, "ignored", {}).values()))
        vocab = f"vocabulary {report.source_vocab_size} -> {report.vocab_size}"
        lines += ["", f"- tensors: {report.num_tensors}; dtype: {report.dtype}; {vocab}"]
        if getattr(report, "added_tokens", None):
            lines.append("- added tokens: " + ", ".join(f"`{t}`={i}" for t, i in report.added_tokens.items()))
        if getattr(report, "tokenizer_settings", None):
            kept = ", ".join(f"`{k}={v!r}`" for k, v in report.tokenizer_settings.items()
                             if k not in report.tokenizer_settings_added and not k.endswith("_token"))
            lines.append(f"- tokenizer settings kept from the source: {kept or 'none stated'}")
        for key, why in (getattr(report, "tokenizer_settings_added", None) or {}).items():
            lines.append(f"- tokenizer setting added: `{key}={report.tokenizer_settings[key]!r}` ({why})")
        if ignored:
            lines.append(f"- dropped source keys ({len(report.ignored)}): " + "; ".join(ignored))
        if report.verify_max_abs_diff is not None:
            diff = report.verify_max_abs_diff
            lines.append(f"- logit parity with the reference forward on a random input: max |diff| = {diff:.2e}")
    return "\n".join(lines) + "\n"


def _language_model(source: str, base_model: str | list[str] | None, config: Mapping[str, Any] | None) -> str:
    """The language model as the card names it: Vicuna-7B v1.5 for the releases, else what the config says."""
    if any(n.lower() in KNOWN_VICUNA_REPOS for n in _base_names(base_model)):
        return "a Vicuna-7B v1.5 language model"
    text = (config or {}).get("text_config") or {}
    if not text:
        return "a causal language model"
    layers = f", {text['num_hidden_layers']} layers" if "num_hidden_layers" in text else ""
    hidden = f", hidden size {text['hidden_size']}" if "hidden_size" in text else ""
    return f"a {text.get('model_type', 'llama').capitalize()} language model{layers}{hidden}"


def build_model_card(
    *,
    source: str = "trained",
    model_id: str | None = None,
    base_model: str | list[str] | None = None,
    base_model_relation: str | None = None,
    license: str | None = None,
    datasets: Iterable[str] | None = None,
    tags: Iterable[str] = (),
    config: Mapping[str, Any] | None = None,
    report: Any | None = None,
    include_paper_results: bool | None = None,
    description: str | None = None,
) -> ModelCard:
    """A complete card: metadata, summary, provenance, architecture, paper results where they apply, usage, licence.

    `include_paper_results=None` shows the paper's tables only for a conversion of the original weights
    (LanguageBind/Video-LLaVA-7B), the one checkpoint they were measured on."""
    data = build_card_data(
        source=source,
        base_model=base_model,
        base_model_relation=base_model_relation,
        license=license,
        datasets=datasets,
        tags=tags,
        model_name=model_id,
    )
    if include_paper_results is None:  # only when the card says these are the weights the paper measured
        names = [base_model] if isinstance(base_model, str) else list(base_model or [])
        include_paper_results = source == "original" and ORIGINAL_REPO.lower() in (n.lower() for n in names)
    title = model_id or "Video-LLaVA (videollava-hf format)"
    summary = description or (
        "Video-LLaVA answers questions about videos and images: LanguageBind-style image and video encoders, one "
        f"shared MLP projector and {_language_model(source, base_model, config)}, stored in the format of "
        "`videollava-hf` (Video-LLaVA on the Hugging Face stack)."
    )
    if data.license == "llama2":
        licence = (
            "The weights derive from Vicuna / Llama 2 and are subject to the "
            "[Llama 2 Community License](https://ai.meta.com/llama/license/); the Video-LLaVA code is Apache-2.0."
        )
    elif data.license == "other":
        licence = (
            "The licence of the source checkpoint applies; this card was written without knowing it (convert with "
            "`--license` / `license=` to state it)."
        )
    else:
        licence = f"License: {data.license}."
    sections = [
        f"# {title}\n\n{summary}\n\nPaper: [Video-LLaVA: Learning United Visual Representation by Alignment Before "
        f"Projection]({PAPER_URL}). Original code: {CODE_URL}.\n",
        _provenance_section(source, base_model, report, config),
        _architecture_section(config),
        _results_section() if include_paper_results else "",
        "## Usage\n\n" + usage_snippet(model_id or "path/to/this/checkpoint") + "\n",
        f"## License\n\n{licence}\n",
        f"## Citation\n\n```bibtex\n{CITATION}\n```\n",
    ]
    body = "\n".join(s for s in sections if s)
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")


def write_model_card(
    out_dir: str | Path,
    *,
    base_model: str | list[str] | None = None,
    source: str = "trained",
    model_id: str | None = None,
    base_model_relation: str | None = None,
    license: str | None = None,
    datasets: Iterable[str] | None = None,
    tags: Iterable[str] = (),
    report: Any | None = None,
    include_paper_results: bool | None = None,
    description: str | None = None,
    overwrite: bool = True,
) -> Path:
    """Write `out_dir/README.md` for the checkpoint in `out_dir` (its config.json, if present, fills the
    architecture section). Returns the path. `source`: "original" / "transformers" (converted) or "trained"."""
    out = Path(out_dir)
    path = out / "README.md"
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (--overwrite) to replace it.")
    config_path = out / "config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else None
    card = build_model_card(
        source=source,
        model_id=model_id,
        base_model=base_model,
        base_model_relation=base_model_relation,
        license=license,
        datasets=datasets,
        tags=tags,
        config=config,
        report=report,
        include_paper_results=include_paper_results,
        description=description,
    )
    out.mkdir(parents=True, exist_ok=True)
    card.save(str(path))
    return path


__all__ = [
    "BASE_MODEL_RELATIONS",
    "CITATION",
    "PAPER_IMAGE_RESULTS",
    "PAPER_VIDEO_RESULTS",
    "SOURCES",
    "build_card_data",
    "build_model_card",
    "usage_snippet",
    "write_model_card",
]
