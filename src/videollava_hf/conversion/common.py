"""Checkpoint conversion to this package's format: the shared machinery and the public entry point.

Two source layouts are supported, each in its own module:

- `convert_original`: the original Video-LLaVA release (LanguageBind/Video-LLaVA-7B: `pytorch_model-*.bin` shards,
  a LLaVA-style `config.json`, key names such as `model.video_tower.video_tower.encoder.layers.N.temporal_attn.*`);
- `convert_transformers`: Transformers' built-in port (LanguageBind/Video-LLaVA-7B-hf, `model_type="video_llava"`).

Both run the same pipeline, implemented here:

1. `resolve_source`: a local directory, or a Hub repo id fetched with `huggingface_hub.snapshot_download`.
2. `find_weight_files` + `read_shard_shapes`: list every source tensor's name and shape without reading the data
   (safetensors headers; `.bin` shards memory-mapped with `torch.load(weights_only=True, mmap=True)`).
3. `plan_conversion`: map every key by an explicit anchored rule or an ignore rule with a reason, then compare the
   result with the key -> shape table of the target model (`expected_state_shapes`, built on the meta device).
   Anything unmatched, unexpected, missing or mis-shaped raises one `CheckpointMismatchError` listing all of it,
   before a single byte is written.
4. `write_shards`: stream shard by shard (load one input shard, rename/transform its tensors, write output shards,
   free) into `model-0000i-of-0000n.safetensors` plus `model.safetensors.index.json`.
5. `finish_conversion`: config, generation config, processor (+ the tokenizer, every setting of the source kept:
   `load_tokenizer`) and a model card (`videollava_hf.conversion.modelcard`) are written next to the weights,
   `verify` runs, and `push_to_hub` uploads the folder with `HfApi().upload_folder`.

Both converters take the same output options (`ConversionOptions`) and build the processor the same way
(`build_processor`); only the key rules, the config translation and the reference used by `verify` differ.
"""

from __future__ import annotations

import json
import re
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import HfApi, snapshot_download  # module attributes, so tests can mock them

from ..models.videollava.configuration_videollava import VideoLlavaConfig

SAFE_INDEX = "model.safetensors.index.json"
BIN_INDEX = "pytorch_model.bin.index.json"
DEFAULT_MAX_SHARD_SIZE = "5GB"
LAYOUTS = ("auto", "original", "transformers")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_LIST_LIMIT = 25  # keys shown per category in an error message


class ConversionError(ValueError):
    """A checkpoint cannot be converted; the message says what was expected, what was found, and what to do."""


class CheckpointMismatchError(ConversionError):
    """The source keys do not account for the target model exactly (see the attributes for the full lists)."""

    def __init__(
        self,
        unmatched: list[str],
        unexpected: list[str],
        missing: list[str],
        mismatched: list[str],
        duplicated: list[str],
        hint: str = "",
    ):
        self.unmatched, self.unexpected, self.missing = unmatched, unexpected, missing
        self.mismatched, self.duplicated = mismatched, duplicated
        parts = []
        for title, items in (
            ("source keys matched by no rule", unmatched),
            ("renamed keys the target model does not have", unexpected),
            ("target weights no source key provides", missing),
            ("shape mismatches", mismatched),
            ("target keys produced more than once", duplicated),
        ):
            if items:
                shown = ", ".join(items[:_LIST_LIMIT]) + (
                    f", ... ({len(items) - _LIST_LIMIT} more)" if len(items) > _LIST_LIMIT else ""
                )
                parts.append(f"{len(items)} {title}: {shown}")
        super().__init__(
            "The checkpoint does not match the target model; nothing was written. "
            + "; ".join(parts)
            + (f". {hint}" if hint else ".")
        )


# ----------------------------------------------------------------------------------------------------------
# Key rules
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyRule:
    """`pattern` (anchored regex) -> `replacement` (re.sub template); `why` documents the rule."""

    pattern: str
    replacement: str
    why: str = ""


@dataclass(frozen=True)
class IgnoreRule:
    """Source keys matching `pattern` are dropped on purpose, for `reason`."""

    pattern: str
    reason: str


def _check_anchored(rules: Iterable[KeyRule | IgnoreRule]) -> None:
    for rule in rules:
        if not (rule.pattern.startswith("^") and rule.pattern.endswith(("$", "."))):
            raise ValueError(f"Key rule {rule.pattern!r} must be anchored (start with '^', end with '$' or '.').")


def make_key_mapper(rules: list[KeyRule], ignore: list[IgnoreRule]) -> Callable[[str], tuple[str | None, str | None]]:
    """A function `key -> (new_key, None)`, `(None, reason)` for an ignored key, or `(None, None)` if no rule matches.

    Ignore rules are tried first, then the rename rules in order (first match wins)."""
    _check_anchored([*rules, *ignore])
    compiled_ignore = [(re.compile(r.pattern), r.reason) for r in ignore]
    compiled = [(re.compile(r.pattern), r.replacement) for r in rules]

    def mapper(key: str) -> tuple[str | None, str | None]:
        for pattern, reason in compiled_ignore:
            if pattern.match(key):
                return None, reason
        for pattern, replacement in compiled:
            if pattern.match(key):
                return pattern.sub(replacement, key, count=1), None
        return None, None

    return mapper


# ----------------------------------------------------------------------------------------------------------
# Sources: local directory or Hub repo, weight files, shapes
# ----------------------------------------------------------------------------------------------------------

_METADATA_PATTERNS = ["*.json", "*.model", "*.txt", "*.jinja"]  # configs and tokenizer files; never code


def resolve_source(
    source: str | Path, *, revision: str | None = None, token: str | None = None, cache_dir: str | None = None
) -> Path:
    """A local checkpoint directory, or a Hub repo id downloaded with `huggingface_hub.snapshot_download`.

    safetensors weights are preferred: `.bin` shards are only downloaded when the repo has no safetensors."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ConversionError(f"Expected a checkpoint directory or a Hub repo id, got the file {str(path)!r}.")
    text = str(source)
    if not _REPO_ID.match(text):
        raise ConversionError(
            f"{text!r} is neither an existing directory nor a Hub repo id (owner/name). Pass the directory that "
            "holds config.json and the weight shards."
        )
    kwargs = {"revision": revision, "token": token, "cache_dir": cache_dir}
    local = Path(_download(text, [*_METADATA_PATTERNS, "*.safetensors"], kwargs))
    if not find_weight_files(local, required=False):
        local = Path(_download(text, [*_METADATA_PATTERNS, "*.bin"], kwargs))
    return local


def hub_repo_id(source: str | Path) -> str | None:
    """`source` when it names a Hub repo (owner/name) rather than an existing local path, else None."""
    text = str(source)
    return text if _REPO_ID.match(text) and not Path(text).expanduser().exists() else None


def _download(repo_id: str, patterns: list[str], kwargs: dict[str, Any]) -> str:
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return snapshot_download(repo_id, allow_patterns=patterns, **kwargs)
    except (RepositoryNotFoundError, GatedRepoError, RevisionNotFoundError) as err:
        raise ConversionError(
            f"The Hub repo {repo_id!r} (revision {kwargs.get('revision') or 'main'}) cannot be read: {err}. Check the "
            "name and revision, and pass a token (`--token` or `hf auth login`) for private or gated repos."
        ) from err
    except (LocalEntryNotFoundError, OfflineModeIsEnabled, ConnectionError, TimeoutError) as err:
        # No network and nothing cached (snapshot_download then raises LocalEntryNotFoundError), or HF_HUB_OFFLINE=1.
        raise ConversionError(_offline_message(repo_id, err)) from err
    except Exception as err:
        if _is_network_error(err):
            raise ConversionError(_offline_message(repo_id, err)) from err
        raise


def _is_network_error(err: BaseException) -> bool:
    """A transport-level failure of huggingface_hub's HTTP client (httpx or its fork), whichever one is installed."""
    return any(
        cls.__module__.split(".")[0].startswith("httpx") and cls.__name__ in ("TransportError", "TimeoutException")
        for cls in type(err).__mro__
    )


def _offline_message(repo_id: str, err: BaseException) -> str:
    return (
        f"Could not download {repo_id!r} from the Hugging Face Hub ({type(err).__name__}: {err}). This machine looks "
        f"offline. Download the checkpoint where there is network (`hf download {repo_id} --local-dir DIR`), copy DIR "
        "here, and pass DIR as the source."
    )


def find_weight_files(directory: Path, *, required: bool = True) -> list[Path]:
    """The weight shards of a checkpoint directory, safetensors preferred over `.bin` (an index file wins)."""
    directory = Path(directory)
    for index_name, pattern in ((SAFE_INDEX, "*.safetensors"), (BIN_INDEX, "*.bin")):
        index = directory / index_name
        if index.is_file():
            weight_map = _read_weight_map(index)
            files = [directory / name for name in sorted(set(weight_map.values()))]
            absent = [str(f.name) for f in files if not f.is_file()]
            if absent:
                raise ConversionError(f"{index} lists shards that are not in {directory}: {absent}. Download them too.")
            return files
        files = sorted(p for p in directory.glob(pattern) if not p.name.startswith("training_args"))
        if files:
            return files
    if required:
        raise ConversionError(
            f"No weights found in {directory}: expected *.safetensors or pytorch_model*.bin shards (optionally with "
            f"{SAFE_INDEX} / {BIN_INDEX})."
        )
    return []


def read_json_file(path: Path, what: str) -> Any:
    """`json.loads` of a checkpoint file, a ConversionError naming the file when it is not JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConversionError(
            f"{path} is not valid JSON ({err}); {what}. The file is damaged or not what its name says: download it "
            "again."
        ) from err


def _read_weight_map(index: Path) -> dict[str, str]:
    data = read_json_file(index, "expected a shard index with a 'weight_map'")
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ConversionError(
            f"{index} has no 'weight_map' object mapping weight names to shard files (found: {found}). Download the "
            "index again, or delete it so that the shards next to it are read directly."
        )
    return weight_map


def _corrupt_shard(path: Path, err: BaseException) -> ConversionError:
    return ConversionError(
        f"Cannot read weights from {path}: the file is truncated or corrupted ({type(err).__name__}: "
        f"{str(err).split('. ')[0]}). Download it again (compare its size with the source)."
    )


def load_shard(path: Path, *, mmap: bool = True) -> dict[str, torch.Tensor]:
    """All tensors of one shard on CPU. `.bin` pickles are read with `weights_only=True` (no code execution) and
    memory-mapped when their format allows it, so only the pages actually used count towards memory."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except SafetensorError as err:
            raise _corrupt_shard(path, err) from err
    try:
        return _torch_load(path, mmap=mmap)
    except RuntimeError as err:
        if mmap and "mmap" in str(err).lower():  # legacy (non-zip) pickles cannot be memory-mapped
            try:
                return _torch_load(path, mmap=False)
            except (RuntimeError, EOFError) as second:
                raise _corrupt_shard(path, second) from second
        raise _corrupt_shard(path, err) from err
    except EOFError as err:  # a legacy pickle cut short
        raise _corrupt_shard(path, err) from err


def _torch_load(path: Path, *, mmap: bool) -> dict[str, torch.Tensor]:
    import pickle

    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        # torch's message suggests retrying with weights_only=False, i.e. running the file's code: not our advice.
        reason = next((line.strip() for line in str(err).splitlines() if "WeightsUnpickler error" in line), "")
        reason = reason.split(". Please use")[0] or "it holds objects other than tensors"
        raise ConversionError(
            f"Refusing to load {path}: it is not a plain tensor checkpoint ({reason}). `.bin` files are read with "
            "torch.load(weights_only=True), which rejects pickled code or arbitrary objects. Re-save the state dict "
            "with only tensors (or convert it to safetensors) in a trusted environment."
        ) from err
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConversionError(f"{path} does not hold a flat {{name: tensor}} state dict; got {type(state).__name__}.")
    return dict(state)


def read_shard_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """`{key: shape}` of one shard without reading tensor data (safetensors header, or a memory-mapped `.bin`)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as handle:
                return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
        except SafetensorError as err:
            raise _corrupt_shard(path, err) from err
    state = load_shard(path, mmap=True)
    shapes = {key: tuple(t.shape) for key, t in state.items()}
    del state
    return shapes


# ----------------------------------------------------------------------------------------------------------
# Target shapes and the conversion plan
# ----------------------------------------------------------------------------------------------------------


def expected_state_shapes(config: VideoLlavaConfig) -> dict[str, tuple[int, ...]]:
    """Key -> shape of every weight `save_pretrained` would write for `config`, computed on the meta device (no
    memory is allocated for the weights). Tied output embeddings are left out, as `save_pretrained` does."""
    from ..models.videollava.modeling_videollava import VideoLlavaForConditionalGeneration

    with torch.device("meta"):
        model = VideoLlavaForConditionalGeneration(config)
    shapes = {key: tuple(t.shape) for key, t in model.state_dict().items()}
    if getattr(config, "tie_word_embeddings", False):
        for tied in getattr(model, "_tied_weights_keys", None) or {}:
            shapes.pop(tied, None)
    return shapes


@dataclass
class ConversionPlan:
    """Where every source tensor goes. `targets[file][source_key] = target_key`; `ignored[source_key] = reason`."""

    targets: dict[Path, dict[str, str]]
    ignored: dict[str, str]
    source_shapes: dict[str, tuple[int, ...]]
    expected: dict[str, tuple[int, ...]]

    @property
    def num_tensors(self) -> int:
        return sum(len(v) for v in self.targets.values())


def plan_conversion(
    shard_shapes: Mapping[Path, Mapping[str, tuple[int, ...]]],
    mapper: Callable[[str], tuple[str | None, str | None]],
    expected: Mapping[str, tuple[int, ...]],
    *,
    row_extendable: Iterable[str] = (),
    hint: str = "",
) -> ConversionPlan:
    """Map every source key and check the result against `expected` (keys and shapes), all at once.

    `row_extendable` target keys (the token embeddings and the LM head) may have fewer rows than expected: the
    converter appends rows for the added tokens. Raises `CheckpointMismatchError` listing every problem."""
    extendable = set(row_extendable)
    targets: dict[Path, dict[str, str]] = {}
    ignored: dict[str, str] = {}
    source_shapes: dict[str, tuple[int, ...]] = {}
    produced: dict[str, str] = {}
    unmatched, unexpected, mismatched, duplicated = [], [], [], []
    for file, shapes in shard_shapes.items():
        targets[file] = {}
        for key, shape in shapes.items():
            if key in source_shapes:
                duplicated.append(f"{key} (in two shards)")
                continue
            source_shapes[key] = tuple(shape)
            new_key, reason = mapper(key)
            if reason is not None:
                ignored[key] = reason
                continue
            if new_key is None:
                unmatched.append(key)
                continue
            if new_key in produced:
                duplicated.append(f"{new_key} (from {produced[new_key]} and {key})")
                continue
            produced[new_key] = key
            targets[file][key] = new_key
            if new_key not in expected:
                unexpected.append(f"{key} -> {new_key}")
            elif not _shape_ok(tuple(shape), expected[new_key], new_key in extendable):
                mismatched.append(f"{key} -> {new_key}: checkpoint {tuple(shape)}, expected {expected[new_key]}")
    missing = sorted(set(expected) - set(produced))
    if unmatched or unexpected or missing or mismatched or duplicated:
        raise CheckpointMismatchError(
            sorted(unmatched), sorted(unexpected), missing, sorted(mismatched), duplicated, hint
        )
    return ConversionPlan(targets, ignored, source_shapes, dict(expected))


def _shape_ok(got: tuple[int, ...], want: tuple[int, ...], extendable: bool) -> bool:
    if got == want:
        return True
    return extendable and len(got) == len(want) and got[1:] == want[1:] and got[0] <= want[0]


def extend_rows(
    weight: torch.Tensor, rows: int, *, fill_ids: Iterable[int] = (), mean_rows: int | None = None
) -> torch.Tensor:
    """`weight` (V, D) -> (rows, D). The appended rows V..rows-1, and the rows `fill_ids` (added tokens whose ids fall
    inside an already padded table), become the mean of the first `mean_rows` rows (default V: all of them), computed
    in float32 and cast back.

    The rule LLaVA itself uses when it adds tokens (`initialize_vision_tokenizer`): deterministic, and a new token
    starts as the "average" token, so it neither dominates nor vanishes in the output distribution."""
    have = weight.shape[0]
    if rows < have:
        raise ConversionError(f"Cannot shrink a {tuple(weight.shape)} embedding to {rows} rows.")
    fill = sorted(set(fill_ids))
    if rows == have and not fill:
        return weight
    mean = weight[: mean_rows or have].float().mean(dim=0, keepdim=True).to(weight.dtype)  # (1, D)
    out = torch.cat([weight, mean.expand(rows - have, -1)], dim=0)  # (rows, D), a new tensor
    if fill:
        out[fill] = mean
    return out


# ----------------------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------------------


def parse_size(size: int | str) -> int:
    """`5GB`, `500MB`, `2GiB` or a byte count -> bytes (decimal units like Transformers, binary with `iB`)."""
    if isinstance(size, int):
        if size <= 0:
            raise ValueError(f"Shard size must be positive, got {size}.")
        return size
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B)?\s*", str(size), flags=re.IGNORECASE)
    if not match:
        raise ValueError(f"Cannot read shard size {size!r}; use e.g. '5GB', '500MB' or a number of bytes.")
    number, unit = float(match.group(1)), (match.group(2) or "B").upper()
    base = 1024 if "I" in unit else 1000
    power = {"B": 0, "K": 1, "M": 2, "G": 3, "T": 4}[unit[0]]
    value = int(number * base**power)
    if value <= 0:
        raise ValueError(f"Shard size must be positive, got {size!r}.")
    return value


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    names = {
        "float16": torch.float16,
        "fp16": torch.float16,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float32": torch.float32,
        "fp32": torch.float32,
    }
    if str(dtype).lower() not in names:
        raise ValueError(f"dtype must be one of {sorted(names)} (or omitted to keep the checkpoint's), got {dtype!r}.")
    return names[str(dtype).lower()]


def prepare_output_dir(output_dir: str | Path, overwrite: bool) -> Path:
    out = Path(output_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise ConversionError(f"The output {out} exists and is not a directory.")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise ConversionError(
                f"The output directory {out} is not empty. Choose a new directory or pass overwrite=True (--overwrite)."
            )
        for stale in [*out.glob("model*.safetensors"), out / SAFE_INDEX]:
            stale.unlink(missing_ok=True)  # old shards would otherwise mix with the new ones
    out.mkdir(parents=True, exist_ok=True)
    return out


class _ShardWriter:
    """Collects tensors into output shards of at most `max_bytes` (a larger tensor gets a shard of its own).

    Parts are written under temporary names and renamed `model-0000i-of-0000n.safetensors` at the end, when `n` is
    known."""

    def __init__(self, out_dir: Path, max_bytes: int):
        self.out_dir, self.max_bytes = out_dir, max_bytes
        self.buffer: dict[str, torch.Tensor] = {}
        self.buffer_bytes = 0
        self.parts: list[tuple[Path, list[str]]] = []
        self.total_bytes = 0
        self.largest_part = 0

    def add(self, key: str, tensor: torch.Tensor) -> None:
        size = tensor.numel() * tensor.element_size()
        if self.buffer and self.buffer_bytes + size > self.max_bytes:
            self.flush()
        self.buffer[key] = tensor
        self.buffer_bytes += size

    def flush(self) -> None:
        from safetensors.torch import save_file

        if not self.buffer:
            return
        path = self.out_dir / f".part-{len(self.parts) + 1:05d}.safetensors.tmp"
        save_file(_unshared(self.buffer), str(path), metadata={"format": "pt"})
        self.parts.append((path, sorted(self.buffer)))
        self.total_bytes += self.buffer_bytes
        self.largest_part = max(self.largest_part, self.buffer_bytes)
        self.buffer, self.buffer_bytes = {}, 0

    def discard(self) -> None:
        for path, _ in self.parts:
            path.unlink(missing_ok=True)
        for stray in self.out_dir.glob(".part-*.safetensors.tmp"):
            stray.unlink(missing_ok=True)
        self.parts, self.buffer = [], {}

    def finish(self) -> dict[str, str]:
        self.flush()
        weight_map: dict[str, str] = {}
        n = len(self.parts)
        for i, (path, keys) in enumerate(self.parts, start=1):
            name = f"model-{i:05d}-of-{n:05d}.safetensors"
            path.replace(self.out_dir / name)
            weight_map.update({k: name for k in keys})
        index = {"metadata": {"total_size": self.total_bytes}, "weight_map": dict(sorted(weight_map.items()))}
        (self.out_dir / SAFE_INDEX).write_text(json.dumps(index, indent=2) + "\n")
        return weight_map


def _unshared(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors that share storage or are views into a larger one: copy those."""
    seen: set[int] = set()
    out = {}
    for key, t in tensors.items():
        t = t.contiguous()
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr in seen or storage.nbytes() != t.numel() * t.element_size():
            t = t.clone()
            ptr = t.untyped_storage().data_ptr()
        seen.add(ptr)
        out[key] = t
    return out


@dataclass
class ShardStats:
    num_tensors: int
    num_shards: int
    total_bytes: int
    largest_input_bytes: int
    largest_output_bytes: int
    source_dtype: torch.dtype | None  # of the first floating-point source tensor


def write_shards(
    plan: ConversionPlan,
    out_dir: Path,
    *,
    transform: Callable[[str, torch.Tensor], torch.Tensor] | None = None,
    dtype: torch.dtype | None = None,
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
    progress: bool = True,
) -> ShardStats:
    """Stream the plan: for each input shard, load it (memory-mapped where possible), rename and transform its
    tensors, write them out, and free it before the next one. Output shards never span two input shards, so at most
    one input shard is resident at a time."""
    from tqdm.auto import tqdm

    writer = _ShardWriter(out_dir, parse_size(max_shard_size))
    dtypes: list[torch.dtype] = []
    files = list(plan.targets)
    try:
        for file in tqdm(files, desc="Converting shards", unit="shard", disable=not progress):
            # One call per shard: when it returns, no reference to the shard's (memory-mapped) tensors is left.
            _convert_one_shard(file, plan, writer, transform, dtype, dtypes)
        weight_map = writer.finish()
    except BaseException:
        writer.discard()  # no half-written parts left behind (Ctrl-C, disk full, ...)
        raise
    largest_input = max((f.stat().st_size for f in files), default=0)
    return ShardStats(
        len(weight_map),
        len(writer.parts),
        writer.total_bytes,
        largest_input,
        writer.largest_part,
        next(iter(dtypes), None),
    )


def _convert_one_shard(
    file: Path,
    plan: ConversionPlan,
    writer: _ShardWriter,
    transform: Callable[[str, torch.Tensor], torch.Tensor] | None,
    dtype: torch.dtype | None,
    dtypes: list[torch.dtype],
) -> None:
    state = load_shard(file)
    for source_key in sorted(plan.targets[file]):
        target_key = plan.targets[file][source_key]
        tensor = state.pop(source_key)
        if not dtypes and tensor.is_floating_point():
            dtypes.append(tensor.dtype)
        if transform is not None:
            tensor = transform(target_key, tensor)
        if dtype is not None and tensor.is_floating_point() and tensor.dtype != dtype:
            tensor = tensor.to(dtype)
        expected = plan.expected[target_key]
        if tuple(tensor.shape) != expected:  # a transform bug must never reach the disk
            raise ConversionError(
                f"Internal error: {target_key} came out as {tuple(tensor.shape)}, expected {expected}."
            )
        writer.add(target_key, tensor)
    writer.flush()  # output shards never span two input shards


def save_config_and_code(config: VideoLlavaConfig, out_dir: Path) -> None:
    """config.json (+ the package's modeling code and `auto_map`, as `save_pretrained` writes for this model, so the
    folder also loads with `trust_remote_code=True` where the package is not installed)."""
    from ..models.videollava._compat import custom_object_save
    from ..models.videollava.export import auto_classes
    from ..models.videollava.modeling_videollava import VideoLlavaForConditionalGeneration

    with torch.device("meta"):
        model = VideoLlavaForConditionalGeneration(config)
    with auto_classes((type(config), "AutoConfig"), (type(model), model._export_auto_class)):
        custom_object_save(model, out_dir, config=config)
        config.save_pretrained(out_dir)


# ----------------------------------------------------------------------------------------------------------
# Report, Hub upload, entry point
# ----------------------------------------------------------------------------------------------------------


@dataclass
class ConversionReport:
    """What a conversion did (also summarised in the model card)."""

    layout: str
    source: str
    output_dir: Path
    num_tensors: int
    num_shards: int
    total_bytes: int
    largest_input_shard_bytes: int
    largest_output_shard_bytes: int
    ignored: dict[str, str] = field(default_factory=dict)
    added_tokens: dict[str, int] = field(default_factory=dict)
    tokenizer_settings: dict[str, Any] = field(default_factory=dict)  # as saved: the source's, plus the added ones
    tokenizer_settings_added: dict[str, str] = field(default_factory=dict)  # setting -> why it was added
    source_vocab_size: int = 0
    vocab_size: int = 0
    dtype: str = ""
    seconds: float = 0.0
    verify_max_abs_diff: float | None = None
    pushed_to: str | None = None

    @classmethod
    def from_shards(cls, layout: str, source: str, output_dir: Path, stats: ShardStats, plan: ConversionPlan,
                    dtype: torch.dtype, **fields: Any) -> ConversionReport:
        """The report of a conversion whose shards `write_shards` wrote (`stats`) from `plan`, saved in `dtype`;
        `fields`: the layout-specific rest (vocabulary sizes, added tokens)."""
        return cls(
            layout=layout,
            source=source,
            output_dir=output_dir,
            num_tensors=stats.num_tensors,
            num_shards=stats.num_shards,
            total_bytes=stats.total_bytes,
            largest_input_shard_bytes=stats.largest_input_bytes,
            largest_output_shard_bytes=stats.largest_output_bytes,
            ignored=plan.ignored,
            dtype=str(dtype).replace("torch.", ""),
            **fields,
        )

    def summary(self) -> str:
        lines = [
            f"Converted {self.source} ({self.layout} layout) -> {self.output_dir}",
            f"  {self.num_tensors} tensors in {self.num_shards} shard(s), {self.total_bytes / 1e9:.3f} GB, "
            f"dtype {self.dtype}",
            f"  vocabulary {self.source_vocab_size} -> {self.vocab_size}"
            + (f" (added {', '.join(f'{t}={i}' for t, i in self.added_tokens.items())})" if self.added_tokens else ""),
            "  tokenizer: "
            + ", ".join(f"{k}={v!r}" for k, v in self.tokenizer_settings.items())
            + (f"; added {'; '.join(f'{k} ({why})' for k, why in self.tokenizer_settings_added.items())}"
               if self.tokenizer_settings_added else "; all as in the source"),
            f"  ignored source keys: {len(self.ignored)}"
            + (f" ({'; '.join(sorted(set(self.ignored.values())))})" if self.ignored else ""),
            f"  time {self.seconds:.1f} s",
        ]
        if self.verify_max_abs_diff is not None:
            lines.append(f"  verify: max |logits - reference| = {self.verify_max_abs_diff:.3e}")
        if self.pushed_to:
            lines.append(f"  pushed to {self.pushed_to}")
        return "\n".join(lines)


def push_to_hub(
    output_dir: str | Path,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    commit_message: str = "Upload Video-LLaVA checkpoint converted with videollava-hf",
) -> str:
    """Create `repo_id` if needed and upload the converted folder with `HfApi().upload_folder`; returns the URL."""
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    info = api.upload_folder(
        folder_path=str(output_dir), repo_id=repo_id, repo_type="model", commit_message=commit_message
    )
    return str(getattr(info, "commit_url", None) or f"https://huggingface.co/{repo_id}")


# ----------------------------------------------------------------------------------------------------------
# What both converters share: options, tokenizer, processor, generation config, the final writes
# ----------------------------------------------------------------------------------------------------------


@dataclass
class ConversionOptions:
    """The output options both converters take as keyword arguments (and `videollava-hf convert` as flags).

    dtype: output dtype (default: keep the checkpoint's). max_shard_size: largest output shard ("5GB").
    verify / verify_dtype: compare the converted model's logits with a reference forward of the source.
    push_to_hub_repo / private / token: upload the folder afterwards. revision / cache_dir / token: for a Hub source.
    base_model / license: for the model card (default: the source repo when it is a Hub id; the licence known for
    it). model_card: write README.md. overwrite: write into a non-empty directory. progress: a progress bar.
    source_name: how the report and card name the source (default: `source` as given)."""

    dtype: str | torch.dtype | None = None
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE
    verify: bool = False
    verify_dtype: str | torch.dtype = "float32"
    push_to_hub_repo: str | None = None
    private: bool = False
    token: str | None = None
    revision: str | None = None
    cache_dir: str | None = None
    base_model: str | None = None
    license: str | None = None
    model_card: bool = True
    overwrite: bool = False
    progress: bool = True
    source_name: str | None = None

    @classmethod
    def split(cls, kwargs: Mapping[str, Any]) -> tuple[ConversionOptions, dict[str, Any]]:
        """(the options among `kwargs`, the other keyword arguments)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in kwargs.items() if k in names}), {
            k: v for k, v in kwargs.items() if k not in names
        }


@dataclass
class SourceCheckpoint:
    """A resolved source: how to call it, where its files are, its config.json, when the conversion started."""

    name: str
    directory: Path
    config: dict[str, Any]
    start: float


def open_source(source: str | Path, options: ConversionOptions) -> SourceCheckpoint:
    start = time.perf_counter()
    directory = resolve_source(source, revision=options.revision, token=options.token, cache_dir=options.cache_dir)
    return SourceCheckpoint(options.source_name or str(source), directory, read_config_dict(directory), start)


# Tokenizer settings the converters keep from the source and report. Transformers 5 stores add_bos_token /
# add_eos_token in tokenizer.json's post-processor rather than tokenizer_config.json; the report reads them back.
TOKENIZER_SETTINGS = ("legacy", "add_bos_token", "add_eos_token", "padding_side", "model_max_length")
_LEGACY_WHY = (
    "the source states none; Transformers 4.x, which Video-LLaVA's tokenizers were saved with, reads a missing "
    "`legacy` as true, Transformers 5 as false, which changes how text after `</s>` is tokenized"
)


def load_tokenizer(location: str | Path, *, hint: str = ""):
    """The source's tokenizer with every setting it states, and `{setting: why}` for the settings added.

    The one setting added: `legacy=True` for a SentencePiece tokenizer (a `tokenizer.model`) whose config states no
    `legacy`, so the converted tokenizer encodes text after a special token as the original did. `legacy` is
    written to tokenizer_config.json either way (Transformers 5 does not save it by itself, and reads a missing
    value as false)."""
    import transformers

    from ..models.videollava._compat import get_tokenizer_config

    def load(loader, **extra):
        with warnings.catch_warnings():
            # AutoTokenizer also parses an original config.json (model_type "llava"), whose 4.31-era `rope_scaling`
            # field Transformers 5 flags as deprecated; the converter translates that field itself.
            warnings.filterwarnings("ignore", message=".*rope_scaling.*", category=FutureWarning)
            return loader.from_pretrained(str(location), **extra)

    try:
        stated = get_tokenizer_config(str(location))
        sentencepiece = _has_file(location, "tokenizer.model")
        # A SentencePiece source loads with the class its tokenizer_config.json names (Vicuna's: LlamaTokenizer),
        # as the original did. AutoTokenizer would pick the generic TokenizersBackend for an original config.json
        # (model_type "llava"), which in Transformers 5.23 drops the dummy prefix at the start of every text.
        named = getattr(transformers, str(stated.get("tokenizer_class") or ""), None) if sentencepiece else None
        loader = named if isinstance(named, type) and issubclass(named, transformers.PreTrainedTokenizerBase) \
            else transformers.AutoTokenizer
        added: dict[str, str] = {}
        extra: dict[str, Any] = {}
        if sentencepiece:
            extra["legacy"] = stated.get("legacy", True)
            if "legacy" not in stated:
                added["legacy"] = _LEGACY_WHY
        tokenizer = load(loader, **extra)
    except (OSError, ValueError) as err:
        raise ConversionError(f"Could not load a tokenizer from {location}: {err}.{' ' + hint if hint else ''}") from err
    if sentencepiece:
        tokenizer.init_kwargs["legacy"] = extra["legacy"]  # saved with the tokenizer from here on
    return tokenizer, added


def _has_file(location: str | Path, filename: str) -> bool:
    """Whether a local directory or Hub repo holds `filename`."""
    path = Path(location).expanduser()
    if path.is_dir():
        return (path / filename).is_file()
    from huggingface_hub import file_exists

    try:
        return file_exists(str(location), filename)
    except Exception as err:  # offline or unreachable: the tokenizer load itself reports it
        if _is_network_error(err) or isinstance(err, (ConnectionError, TimeoutError)):
            return False
        raise


def tokenizer_settings(tokenizer) -> dict[str, Any]:
    """The settings of `TOKENIZER_SETTINGS` a tokenizer has (or will be saved with), plus its named special tokens."""
    settings = {k: getattr(tokenizer, k, None) for k in TOKENIZER_SETTINGS}
    settings["legacy"] = tokenizer.init_kwargs.get("legacy", settings["legacy"])
    settings = {k: v for k, v in settings.items() if v is not None}
    settings.update(tokenizer.special_tokens_map)
    return settings


def build_processor(config: VideoLlavaConfig, tokenizer, *, resample_mode: str, do_pad_to_square: bool = False):
    """The processor saved with a converted checkpoint: sizes and strategies from `config`, the source's
    resampling (`"original"` LanguageBind transforms or the built-in port's `"transformers"` ones) and the
    original's prompt encoding (the weights of both layouts were trained with it)."""
    from ..models.videollava.image_processing_videollava import VideoLlavaHfImageProcessor
    from ..models.videollava.processing_videollava import VideoLlavaHfProcessor
    from ..models.videollava.video_processing_videollava import VideoLlavaHfVideoProcessor

    side = config.vision_config.image_size
    image_processor = VideoLlavaHfImageProcessor(
        size=side, crop_size=side, resample_mode=resample_mode, do_pad_to_square=do_pad_to_square
    )
    video_processor = VideoLlavaHfVideoProcessor(
        num_frames=config.num_frames, size=side, crop_size=side, resample_mode=resample_mode
    )
    return VideoLlavaHfProcessor.from_model_config(
        config, tokenizer, image_processor=image_processor, video_processor=video_processor
    )


def save_generation_config(source_dir: Path, out_dir: Path, config: VideoLlavaConfig, pad_token_id: int) -> None:
    """The source's generation_config.json (or one from the text config's BOS / EOS), with the pad token set."""
    from transformers import GenerationConfig

    if (Path(source_dir) / "generation_config.json").is_file():
        generation = GenerationConfig.from_pretrained(str(source_dir))
    else:
        generation = GenerationConfig(
            bos_token_id=config.text_config.bos_token_id, eos_token_id=config.text_config.eos_token_id
        )
    generation.pad_token_id = pad_token_id
    generation.save_pretrained(out_dir)


def finish_conversion(
    report: ConversionReport,
    source: SourceCheckpoint,
    config: VideoLlavaConfig,
    processor,
    options: ConversionOptions,
    *,
    verify: Callable[[], float],
    tokenizer_added: Mapping[str, str] = (),
) -> ConversionReport:
    """After the shards: config (+ code), generation config, processor and tokenizer, verify, model card, push."""
    out = report.output_dir
    save_config_and_code(config, out)
    save_generation_config(source.directory, out, config, processor.tokenizer.pad_token_id)
    processor.save_pretrained(out, export_code=True)
    report.tokenizer_settings = tokenizer_settings(processor.tokenizer)
    report.tokenizer_settings_added = dict(tokenizer_added)
    if options.verify:
        report.verify_max_abs_diff = verify()
    if options.model_card:
        from .modelcard import write_model_card

        write_model_card(
            out,
            source=report.layout,
            base_model=options.base_model or hub_repo_id(source.name),
            license=options.license,
            report=report,
            model_id=options.push_to_hub_repo,
        )
    report.seconds = time.perf_counter() - source.start
    if options.push_to_hub_repo:
        report.pushed_to = push_to_hub(out, options.push_to_hub_repo, token=options.token, private=options.private)
    return report


def detect_layout(config_dict: Mapping[str, Any]) -> str:
    """`"transformers"` for the built-in port's config.json, `"original"` for the original LLaVA-style one."""
    from ..models.videollava.builtin_port import is_transformers_config

    if is_transformers_config(dict(config_dict)):
        return "transformers"
    if config_dict.get("mm_video_tower") or config_dict.get("mm_image_tower"):
        return "original"
    if config_dict.get("model_type") == VideoLlavaConfig.model_type:
        raise ConversionError(
            "This checkpoint is already in the videollava-hf format; load it directly with from_pretrained."
        )
    raise ConversionError(
        f"config.json (model_type={config_dict.get('model_type')!r}) is neither an original Video-LLaVA config (with "
        "`mm_video_tower` / `mm_image_tower`) nor Transformers' built-in one (model_type 'video_llava')."
    )


def read_config_dict(directory: Path) -> dict[str, Any]:
    path = Path(directory) / "config.json"
    if not path.is_file():
        raise ConversionError(f"{directory} has no config.json; expected a Video-LLaVA checkpoint directory.")
    config = read_json_file(path, "expected the model's config")
    if not isinstance(config, dict):
        raise ConversionError(f"{path} holds a JSON {type(config).__name__}, not the model config (an object).")
    return config


__all__ = [
    "BIN_INDEX",
    "CheckpointMismatchError",
    "ConversionError",
    "ConversionOptions",
    "ConversionPlan",
    "ConversionReport",
    "DEFAULT_MAX_SHARD_SIZE",
    "IgnoreRule",
    "KeyRule",
    "LAYOUTS",
    "SAFE_INDEX",
    "read_json_file",
    "ShardStats",
    "SourceCheckpoint",
    "TOKENIZER_SETTINGS",
    "build_processor",
    "detect_layout",
    "expected_state_shapes",
    "extend_rows",
    "find_weight_files",
    "finish_conversion",
    "hub_repo_id",
    "load_tokenizer",
    "load_shard",
    "make_key_mapper",
    "open_source",
    "parse_dtype",
    "parse_size",
    "plan_conversion",
    "prepare_output_dir",
    "push_to_hub",
    "read_config_dict",
    "read_shard_shapes",
    "resolve_source",
    "save_config_and_code",
    "save_generation_config",
    "tokenizer_settings",
    "write_shards",
]
