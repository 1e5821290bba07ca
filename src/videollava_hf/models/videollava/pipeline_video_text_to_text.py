"""The `video-text-to-text` pipeline: ask a question about videos and/or images, get the generated answer.

    >>> import videollava_hf  # registers the task
    >>> from transformers import pipeline
    >>> pipe = pipeline("video-text-to-text", model="path/to/checkpoint")
    >>> pipe(videos="clip.mp4", text="What is happening?", max_new_tokens=32)
    [{'input_text': "A chat between ... USER: <video>\\nWhat is happening? ASSISTANT:",
      'generated_text': "A chat between ... ASSISTANT: A man irons clothes on a car."}]

Inputs: `videos=` (path, URL, bytes, (F, H, W, 3) uint8 array or tensor, list of frames = one video), optional
`images=`, and `text=`: a prompt, a list of prompts (a batch), or chat messages whose content items name their media
(`{"type": "video", "path" | "url" | "video": ...}`). A prompt without `<video>` / `<image>` placeholders is wrapped
in the model's chat template with the media first; a prompt with placeholders is used verbatim. Frames are sampled by
the processor's reader with the model's policy (8 uniform frames) unless `num_frames`, `fps`, `max_frames`, `indices`,
`clip_start` or `clip_end` say otherwise. Batches (`batch_size > 1`) are left-padded and run as one `generate()` call.

Output, as in Transformers' `image-text-to-text` pipeline: per input a list of
`{"input_text": ..., "generated_text": ...}` (one dict per returned sequence). `input_text` is what the model was
prompted with: the chat messages, or the prompt string after the chat template was applied. With
`return_full_text=True` (the default) `generated_text` is that prompt followed by the answer (for chats: the messages
plus an assistant message); with `return_full_text=False` it is the answer only.

This module only imports installed libraries and flat sibling modules, so it can travel with a checkpoint as remote
code (`custom_pipelines`, see `add_custom_pipeline_to_config` and `VideoTextToTextPipeline.save_pretrained`).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sized
from functools import partial
from typing import Any

import torch
from torch.utils.data import DataLoader
from transformers import AutoModelForImageTextToText, GenerationConfig
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.pipelines.base import Pipeline
from transformers.pipelines.pt_utils import PipelineDataset, PipelineIterator
from transformers.utils.chat_template_utils import Chat, is_valid_message

from ._compat import custom_object_save
from .media_io import encoded_media_columns, load_image
from .media_limits import MediaLimits
from .processing_videollava import VideoLlavaHfProcessor
from .video_processing_videollava import FRAME_POLICY_KEYS, split_videos

logger = logging.getLogger(__name__)

TASK = "video-text-to-text"
PIPELINE_TYPE = "multimodal"
# Keys under which a chat content item may carry its media, in order of preference.
MEDIA_PAYLOAD_KEYS = {"video": ("video", "path", "url"), "image": ("image", "path", "url")}
# Keys of a dict sample (dataset / generator item).
SAMPLE_KEYS = {"text", "videos", "video", "images", "image"}
# on_error="record": a sample that cannot be read or preprocessed yields {"input_text", "error"}; the others go on.
ON_ERROR = ("raise", "record")


# ----------------------------------------------------------------------------------------------------------------
# Processor loading
# ----------------------------------------------------------------------------------------------------------------


def load_processor(name_or_path: str | os.PathLike, config=None, **hub_kwargs) -> VideoLlavaHfProcessor:
    """The processor saved next to a checkpoint (local directory or Hub id); see `VideoLlavaHfProcessor.from_pretrained`
    (with `config`, a checkpoint without processor files gets one derived from the model config)."""
    return VideoLlavaHfProcessor.from_pretrained(name_or_path, config=config, **hub_kwargs)


def _is_videollava_processor(processor: Any) -> bool:
    # Duck-typed: a processor loaded as remote code is a different class object with the same interface.
    return callable(getattr(processor, "expand_placeholders", None)) and hasattr(processor, "video_token")


def _resolve_processor(model, processor):
    """The processor to use: the given one, or one loaded from where the model came from."""
    if isinstance(processor, (str, os.PathLike)):
        return load_processor(processor, config=model.config)
    if processor is not None and _is_videollava_processor(processor):
        return processor
    source = getattr(model, "name_or_path", None) or getattr(model.config, "_name_or_path", None)
    if not source:
        raise ValueError(
            "The video-text-to-text pipeline needs a VideoLlavaHfProcessor and could not find one: the model was not "
            "loaded from a path. Pass `processor=` (e.g. VideoLlavaHfProcessor.from_pretrained(dir))."
        )
    if processor is not None:
        logger.warning(
            "Replacing the %s given to the pipeline with the package's VideoLlavaHfProcessor from %s (the pipeline "
            "needs its frame-policy and chat-template options).", type(processor).__name__, source
        )
    return load_processor(source, config=model.config)


def _check_model(model) -> None:
    config = getattr(model, "config", None)
    if getattr(config, "video_token_index", None) is None or not hasattr(model, "generate"):
        raise TypeError(
            "The video-text-to-text pipeline needs a Video-LLaVA model (VideoLlavaForConditionalGeneration); got "
            f"{type(model).__name__} with model_type {getattr(config, 'model_type', None)!r}. Convert the checkpoint "
            "with `videollava-hf convert` or load a Video-LLaVA checkpoint."
        )


# ----------------------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------------------


def _is_chat(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(is_valid_message(m) for m in value)


def _is_chat_batch(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(_is_chat(c) for c in value)


def _media_list(value: Any) -> list:
    """One sample's videos as a list of videos (a list of frames is ONE video)."""
    return [] if value is None else split_videos(value)


def _image_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _batch_column(values: Any, size: int, name: str) -> list:
    """Per-sample media for a batch of `size` prompts: None, or a list with one entry per prompt."""
    if values is None:
        return [None] * size
    if not isinstance(values, (list, tuple)) or len(values) != size:
        got = f"a list of {len(values)}" if isinstance(values, (list, tuple)) else type(values).__name__
        raise ValueError(
            f"`text` is a batch of {size} prompts, so `{name}` must be a list with one entry per prompt (an entry may "
            f"itself be a list for several media in one prompt); got {got}."
        )
    return list(values)


def _sample_from_dict(item: dict) -> dict:
    unknown = set(item) - SAMPLE_KEYS
    if unknown or "text" not in item:
        raise ValueError(
            f"A dict input needs a 'text' key and optionally 'video(s)' / 'image(s)'; got keys {sorted(item)}. "
            "Select those columns first (e.g. dataset.select_columns([...]))."
        )
    text = item["text"]
    if _is_chat(text):
        text = Chat(list(text))
    return {
        "text": text,
        "videos": item.get("videos", item.get("video")),
        "images": item.get("images", item.get("image")),
    }


def _payload(item: dict, kind: str, given: list, position: int) -> Any:
    for key in MEDIA_PAYLOAD_KEYS[kind]:
        if item.get(key) is not None:
            return item[key]
    if not given:
        raise ValueError(
            f"Chat content item {position} is {{'type': '{kind}'}} without a "
            f"{' / '.join(repr(k) for k in MEDIA_PAYLOAD_KEYS[kind])} key, and no further {kind} was passed in "
            f"`{kind}s=`. Put the media in the item, e.g. {{'type': '{kind}', 'path': 'file'}}."
        )
    return given.pop(0)


def split_chat_media(messages: list[dict], videos: list, images: list) -> tuple[list[dict], list, list]:
    """Chat messages -> (messages without media payloads, videos, images), media in prompt order.

    Content items of type "video" / "image" carry their media under "video" / "image", "path" or "url"; items
    without one take the next entry of `videos` / `images` (media passed next to the chat)."""
    videos, images = list(videos), list(images)
    clean, found = [], {"video": [], "image": []}
    position = 0
    for message in messages:
        content = message["content"]
        if isinstance(content, str):
            clean.append(dict(message))
            continue
        items = []
        for item in content:
            kind = item.get("type")
            if kind in found:
                found[kind].append(_payload(item, kind, videos if kind == "video" else images, position))
                items.append({"type": kind})
            else:
                items.append(item)
            position += 1
        clean.append({**message, "content": items})
    for kind, left in (("video", videos), ("image", images)):
        if left:
            raise ValueError(
                f"{len(left)} {kind}(s) were passed in `{kind}s=` but the chat has no {kind} item left to attach them "
                f"to; add a {{'type': '{kind}'}} item per {kind} to the user message."
            )
    return clean, found["video"], found["image"]


def collate_left_padded(items: list[dict], pad_token_id: int) -> dict:
    """Preprocessed samples -> one batch: prompts left-padded, media concatenated in sample order.

    input_ids / attention_mask: each (1, L_i) -> (B, max L_i), pads on the left so generation continues every row
    from its last real token. pixel_values (I_i, 3, H, W) and pixel_values_videos (V_i, T, 3, H, W) concatenate along
    dim 0, which is the order the model fills the placeholders in (row by row)."""
    errors = [item.get("error") for item in items]  # samples that failed to preprocess (on_error="record")
    good = [item for item in items if item.get("error") is None]
    lengths = [item["input_ids"].shape[-1] if item.get("error") is None else 1 for item in items]
    width = max(lengths)
    dtypes = (good[0]["input_ids"].dtype, good[0]["attention_mask"].dtype) if good else (torch.long, torch.long)
    input_ids = torch.full((len(items), width), pad_token_id, dtype=dtypes[0])
    attention_mask = torch.zeros((len(items), width), dtype=dtypes[1])
    for row, (item, length) in enumerate(zip(items, lengths)):
        if item.get("error") is None:
            input_ids[row, width - length :] = item["input_ids"][0]
            attention_mask[row, width - length :] = item["attention_mask"][0]
    batch: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
    if any(e is not None for e in errors):
        batch["error"] = errors
    for key in ("pixel_values", "pixel_values_videos"):
        parts = [item[key] for item in items if item.get(key) is not None]
        if not parts:
            continue
        shapes = sorted({tuple(p.shape[1:]) for p in parts})
        if len(shapes) > 1:
            raise ValueError(
                f"Cannot batch {key} of different shapes {shapes}: videos of one batch need the same number of "
                "frames. Use the same frame policy for all (e.g. num_frames=8), or batch_size=1."
            )
        batch[key] = torch.cat(parts)
    for key in ("input_text", "prompt_text"):
        batch[key] = [item[key] for item in items]
    unknown = set(good[0] if good else {}) - set(batch)
    if unknown:
        raise ValueError(f"Cannot batch processor outputs {sorted(unknown)}; use batch_size=1 with these options.")
    return batch


def _as_list(value: Any) -> list:
    # Batched model outputs carry lists; single-sample runs carry the object itself (a str or a Chat).
    return value if isinstance(value, list) else [value]


# ----------------------------------------------------------------------------------------------------------------
# The pipeline
# ----------------------------------------------------------------------------------------------------------------


class PromptTruncatedWarning(UserWarning):
    """`truncation=True` cut text tokens so that the prompt and the answer fit the model's context."""


class VideoTextToTextPipeline(Pipeline):
    r"""Answer questions about videos and images with a Video-LLaVA model (see the module docstring).

    Call arguments: `videos`, `text`, `images` (see module docstring), plus `max_new_tokens`, `generate_kwargs`
    (dict for `generate()`, e.g. a streamer), generation parameters by name (`do_sample=True`, ...),
    `return_full_text` (default True), `return_tensors`, `continue_final_message`, `add_system_prompt` (False drops
    the llava_v1 system prompt), frame-policy keywords (`num_frames`, `fps`, `max_frames`, `indices`, `clip_start`,
    `clip_end`), `processor_kwargs`, `timeout` (image URLs), `batch_size`, `progress_bar` (tqdm over a list, dataset
    or generator), `on_error` ("raise", the default, or "record": a sample whose media cannot be read or
    preprocessed gives `[{"input_text", "error"}]` and the other samples of the list are answered).
    """

    _load_processor = None  # tried with AutoProcessor; falls back to `load_processor` in __init__
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    _pipeline_calls_generate = True
    _default_generation_config = GenerationConfig(max_new_tokens=256)

    def __init__(self, model, processor=None, **kwargs):
        _check_model(model)
        processor = _resolve_processor(model, processor)
        kwargs["tokenizer"] = processor.tokenizer  # so the base class sets the generation pad_token_id
        super().__init__(model, processor=processor, **kwargs)
        self._progress_bar = False

    # --- parameters -----------------------------------------------------------------------------------------
    def _sanitize_parameters(
        self,
        max_new_tokens: int | None = None,
        generate_kwargs: dict | None = None,
        return_full_text: bool | None = None,
        return_tensors: bool | None = None,
        continue_final_message: bool | None = None,
        add_system_prompt: bool | None = None,
        skip_special_tokens: bool | None = None,
        clean_up_tokenization_spaces: bool | None = None,
        processor_kwargs: dict | None = None,
        timeout: float | None = None,
        on_error: str | None = None,
        limits: dict | MediaLimits | None = None,
        truncation: bool | None = None,
        **kwargs,
    ):
        preprocess: dict[str, Any] = {}
        forward: dict[str, Any] = {}
        postprocess: dict[str, Any] = {}
        generation = dict(generate_kwargs or {})
        policy = {k: kwargs.pop(k) for k in FRAME_POLICY_KEYS if k in kwargs}
        generation_keys = {k for k in vars(GenerationConfig()) if not k.startswith("_")}
        generation.update({k: kwargs.pop(k) for k in list(kwargs) if k in generation_keys})
        if kwargs:
            raise TypeError(
                f"video-text-to-text pipeline got unexpected argument(s) {sorted(kwargs)}. Frame-policy options are "
                f"{list(FRAME_POLICY_KEYS)}; other processor options go in `processor_kwargs={{...}}`, generation "
                "options in `generate_kwargs={...}`."
            )
        if policy:
            preprocess["frame_policy"] = policy
        for key, value in (
            ("add_system_prompt", add_system_prompt),
            ("continue_final_message", continue_final_message),
            ("processor_kwargs", processor_kwargs),
            ("timeout", timeout),
            ("limits", limits),
            ("truncation", truncation),
        ):
            if value is not None:
                preprocess[key] = value
        if on_error is not None:
            if on_error not in ON_ERROR:
                raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}.")
            preprocess["on_error"] = on_error
        if max_new_tokens is not None:
            if "max_new_tokens" in generation:
                raise ValueError("`max_new_tokens` was given twice (directly and in generate_kwargs); give it once.")
            generation["max_new_tokens"] = max_new_tokens
        if generation:
            forward["generate_kwargs"] = generation
        # The prompt-length check needs the answer's length too; it runs in preprocess, before any batch is formed.
        preprocess["answer_budget"] = generation
        if return_tensors and return_full_text is not None:
            raise ValueError("`return_full_text` and `return_tensors` exclude each other; pass one of them.")
        for key, value in (
            ("return_full_text", return_full_text),
            ("return_tensors", return_tensors),
            ("continue_final_message", continue_final_message),
            ("skip_special_tokens", skip_special_tokens),
            ("clean_up_tokenization_spaces", clean_up_tokenization_spaces),
        ):
            if value is not None:
                postprocess[key] = value
        return preprocess, forward, postprocess

    # --- entry point ----------------------------------------------------------------------------------------
    def __call__(self, videos=None, text=None, images=None, **kwargs):
        """Answer `text` about `videos` / `images`. One prompt -> a list of result dicts; a list of prompts (or
        chats) -> a list of such lists; a dataset or generator of `{"text", "video(s)", "image(s)"}` dicts or
        chats -> an iterator of such lists."""
        progress_bar = bool(kwargs.pop("progress_bar", False))
        inputs = self._gather_inputs(videos, text, images)
        self._progress_bar = progress_bar
        try:
            return super().__call__(inputs, **kwargs)
        finally:
            self._progress_bar = False

    def _gather_inputs(self, videos, text, images):
        if text is None:
            if videos is None and images is None:
                raise ValueError("Nothing to do: pass `text=` (a question or chat messages) and `videos=`/`images=`.")
            if images is None and _is_chat(videos):
                return Chat(list(videos))
            if images is None and _is_chat_batch(videos):
                return [Chat(list(chat)) for chat in videos]
            if images is None and not isinstance(videos, (str, bytes, os.PathLike)) and _is_sample_source(videos):
                # dict, list of dicts, dataset or generator: each item is one sample; datasets' Video() / Image()
                # columns are read undecoded, by the processor's readers
                if hasattr(videos, "features") and hasattr(videos, "__getitem__") and hasattr(videos, "__len__"):
                    return _Rows(encoded_media_columns(videos))
                return videos
            raise ValueError(
                "`text=` is missing: pass the question (a string), a list of questions, or chat messages "
                "([{'role': 'user', 'content': [{'type': 'video', 'path': ...}, {'type': 'text', 'text': ...}]}])."
            )
        if _is_chat(text):
            return {"text": Chat(list(text)), "videos": videos, "images": images}
        if isinstance(text, str):
            return {"text": text, "videos": videos, "images": images}
        if isinstance(text, (list, tuple)) and text:
            if not all(isinstance(t, str) or _is_chat(t) for t in text):
                raise TypeError("`text` must be a string, a list of strings, chat messages, or a list of chats.")
            column_v = _batch_column(videos, len(text), "videos")
            column_i = _batch_column(images, len(text), "images")
            return [
                {"text": Chat(list(t)) if _is_chat(t) else t, "videos": v, "images": i}
                for t, v, i in zip(text, column_v, column_i)
            ]
        raise TypeError(f"`text` must be a string, a list of strings or chat messages, got {type(text).__name__}.")

    def get_iterator(self, inputs, num_workers, batch_size, preprocess_params, forward_params, postprocess_params):
        """Like the base class, with a collate function that left-pads prompts and concatenates media, so a batch
        is one `generate()` call; optionally wrapped in a tqdm progress bar counting samples."""
        if isinstance(inputs, Sized):
            dataset = PipelineDataset(inputs, self.preprocess, preprocess_params)
        else:
            num_workers = min(num_workers, 1)  # an iterable cannot be split across workers
            dataset = PipelineIterator(inputs, self.preprocess, preprocess_params)
        pad_token_id = self.processor.tokenizer.pad_token_id
        if pad_token_id is None:
            raise ValueError("The tokenizer has no pad token, so prompts cannot be batched; set tokenizer.pad_token.")
        collate = partial(collate_left_padded, pad_token_id=pad_token_id)
        loader = DataLoader(dataset, num_workers=num_workers, batch_size=batch_size, collate_fn=collate)
        outputs = PipelineIterator(loader, self.forward, forward_params, loader_batch_size=batch_size)
        final = PipelineIterator(outputs, self.postprocess, postprocess_params)
        if self._progress_bar:
            from tqdm.auto import tqdm

            total = len(inputs) if isinstance(inputs, Sized) else None
            return tqdm(final, total=total, desc=TASK, unit="sample")
        return final

    # --- steps ----------------------------------------------------------------------------------------------
    def preprocess(self, inputs, on_error: str = "raise", **options) -> dict:
        if on_error == "raise":
            return self._preprocess(inputs, **options)
        try:
            return self._preprocess(inputs, **options)
        except Exception as err:  # noqa: BLE001 - on_error="record": this sample's result says why, the rest go on
            text = inputs.get("text") if isinstance(inputs, dict) else inputs
            shown = text.messages if isinstance(text, Chat) else text
            return {"error": f"{type(err).__name__}: {err}", "input_text": shown, "prompt_text": None}

    def _preprocess(
        self,
        inputs,
        frame_policy: dict | None = None,
        add_system_prompt: bool | None = None,
        continue_final_message: bool | None = None,
        processor_kwargs: dict | None = None,
        timeout: float | None = None,
        limits: dict | MediaLimits | None = None,
        truncation: bool | None = None,
        answer_budget: dict | None = None,
    ) -> dict:
        sample = self._as_sample(inputs)
        videos, images = _media_list(sample["videos"]), _image_list(sample["images"])
        template_kwargs = {} if add_system_prompt is None else {"add_system_prompt": add_system_prompt}
        text = sample["text"]
        if isinstance(text, Chat):
            messages, videos, images = split_chat_media(text.messages, videos, images)
            if continue_final_message is None:
                continue_final_message = messages[-1]["role"] == "assistant"
            prompt = self.processor.apply_chat_template(
                messages,
                tokenize=False,
                add_generation_prompt=not continue_final_message,
                continue_final_message=continue_final_message,
                **template_kwargs,
            )
            input_text: Any = text
        elif self._has_placeholders(text):
            prompt = input_text = text
        else:
            # A plain question: the model was trained on its chat format, so wrap it there, media first.
            content = [{"type": "video"} for _ in videos] + [{"type": "image"} for _ in images]
            messages = [{"role": "user", "content": content + [{"type": "text", "text": text}]}]
            prompt = self.processor.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True, **template_kwargs
            )
            input_text = prompt
        # Media of every kind (paths, URLs, bytes, datasets cells, ...) are read by the processor (media_io).
        reader = {} if limits is None else {"limits": limits}
        encoding = self.processor(
            text=prompt,
            images=images or None,
            videos=videos or None,
            return_tensors="pt",
            **({} if timeout is None else {"timeout": timeout}),
            **(frame_policy or {}),
            **reader,
            **(processor_kwargs or {}),
        )
        encoding = self._fit_context(encoding, answer_budget or {}, bool(truncation))
        if self.dtype is not None and self.dtype.is_floating_point:
            encoding = encoding.to(dtype=self.dtype)  # casts pixel values only; token ids stay integer
        return {**encoding, "input_text": input_text, "prompt_text": prompt}

    def context_length(self) -> int | None:
        """Tokens the language model can attend to (its `max_position_embeddings`), None when unknown."""
        config = self.model.config
        text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
        value = getattr(text_config, "max_position_embeddings", None)
        return int(value) if value else None

    def _answer_limits(self, generation: dict) -> tuple[int | None, int | None]:
        """(max_new_tokens, max_length) that `generate()` will use: the call's, the pipeline's, the model's."""
        kwargs = self._prepare_generate_kwargs(dict(generation))
        configs = [kwargs, vars(kwargs.get("generation_config") or GenerationConfig()), vars(self.model.generation_config)]
        found = []
        for key in ("max_new_tokens", "max_length"):
            found.append(next((int(c[key]) for c in configs if c.get(key) is not None), None))
        return found[0], found[1]

    def _fit_context(self, encoding, budget: dict, truncation: bool):  # budget: the call's generation parameters
        """Refuse (or, with `truncation=True`, shorten and say so) a prompt that leaves no room for the answer.

        A prompt of N tokens plus max_new_tokens K must fit the context C: N <= C - K. Position embeddings beyond C
        were never trained, and generation past them is silently wrong. Truncation drops the text tokens right
        after the last media placeholder run (the start of the oldest text), keeping the media, the system prompt
        and the end of the prompt ("... ASSISTANT:")."""
        context = self.context_length()
        if context is None:
            return encoding
        ids = encoding["input_ids"]  # (1, N)
        length = ids.shape[-1]
        new, max_length = self._answer_limits(budget)
        if new is not None:
            limit, why = context - new, f"the model's context of {context} tokens minus max_new_tokens={new}"
        else:  # the answer ends at max_length tokens in all, prompt included
            limit, why = min(context, max_length or context) - 1, f"the model's context of {context} tokens"
        if length <= limit:
            return encoding
        if not truncation:
            raise ValueError(
                f"The prompt is {length} tokens, limit {limit} ({why}). Shorten the question, use fewer frames "
                "(num_frames=) or a smaller max_new_tokens, or ask for truncation (truncation=True; CLI: --truncate) to cut "
                "the text (media are kept)."
            )
        media = (ids[0] == self.processor.video_token_id) | (ids[0] == self.processor.image_token_id)
        head = int(media.nonzero().max()) + 1 if bool(media.any()) else 0  # keep everything up to the media's end
        tail = limit - head
        if tail < 1:
            raise ValueError(
                f"The prompt is {length} tokens, limit {limit} ({why}), and its media alone take {head} tokens, so "
                "truncating the text cannot make it fit. Use fewer frames (num_frames=) or a smaller max_new_tokens."
            )
        dropped = length - limit
        warnings.warn(
            f"prompt truncated from {length} to {limit} tokens ({why}): dropped {dropped} text tokens after the media",
            PromptTruncatedWarning, stacklevel=2,
        )
        for key in ("input_ids", "attention_mask"):
            value = encoding[key]
            encoding[key] = torch.cat([value[:, :head], value[:, length - tail :]], dim=-1)
        return encoding

    def _as_sample(self, inputs) -> dict:
        if isinstance(inputs, Chat):
            return {"text": inputs, "videos": None, "images": None}
        if isinstance(inputs, dict):
            return _sample_from_dict(inputs) if not isinstance(inputs.get("text"), Chat) else inputs
        if _is_chat(inputs):
            return {"text": Chat(list(inputs)), "videos": None, "images": None}
        raise TypeError(
            "Each input must be a dict with 'text' and 'video(s)' / 'image(s)' keys, or a chat (list of messages); "
            f"got {type(inputs).__name__}."
        )

    def _has_placeholders(self, text: str) -> bool:
        return self.processor.video_token in text or self.processor.image_token in text

    def _forward(self, model_inputs: dict, generate_kwargs: dict | None = None) -> dict:
        input_text = model_inputs.pop("input_text")
        prompt_text = model_inputs.pop("prompt_text")
        generate_kwargs = self._prepare_generate_kwargs(dict(generate_kwargs or {}), return_dict_in_generate=False)
        errors = model_inputs.pop("error", None)
        if isinstance(errors, str):  # a single sample, not collated: nothing to generate
            empty = torch.zeros((1, 0), dtype=torch.long)
            return {"generated_sequence": empty[:, None], "input_ids": empty, "attention_mask": empty,
                    "input_text": input_text, "prompt_text": prompt_text, "error": [errors]}
        input_ids = model_inputs["input_ids"]  # (B, L) left-padded
        if errors is not None and any(e is not None for e in errors):
            sequences = self._generate_good_rows(model_inputs, generate_kwargs, errors)
        else:
            sequences = self.model.generate(**model_inputs, **generate_kwargs)  # (B * n, L + new)
            sequences = sequences.reshape(input_ids.shape[0], -1, sequences.shape[-1])
        outputs = {
            "generated_sequence": sequences,  # first key: the pipeline iterator reads the batch size from it
            "input_ids": input_ids,
            "attention_mask": model_inputs["attention_mask"],
            "input_text": input_text,
            "prompt_text": prompt_text,
        }
        if errors is not None:
            outputs["error"] = errors
        return outputs

    def _generate_good_rows(self, model_inputs: dict, generate_kwargs: dict, errors: list) -> torch.Tensor:
        """Generate for the rows without an error; failed rows get padding only. -> (B, n, L + new)."""
        input_ids = model_inputs["input_ids"]
        rows = [i for i, e in enumerate(errors) if e is None]
        n = int(generate_kwargs.get("num_return_sequences") or 1)
        pad = self.processor.tokenizer.pad_token_id
        if not rows:
            return input_ids.new_full((input_ids.shape[0], n, input_ids.shape[1]), pad)
        picked = {k: v[rows] for k, v in model_inputs.items() if k in ("input_ids", "attention_mask")}
        for key in ("pixel_values", "pixel_values_videos"):  # media of the good rows, which are all of them
            if key in model_inputs:
                picked[key] = model_inputs[key]
        generated = self.model.generate(**picked, **generate_kwargs)
        generated = generated.reshape(len(rows), n, generated.shape[-1])
        sequences = input_ids.new_full((input_ids.shape[0], n, generated.shape[-1]), pad)
        sequences[rows] = generated
        return sequences

    def postprocess(
        self,
        model_outputs: dict,
        return_full_text: bool = True,
        return_tensors: bool = False,
        continue_final_message: bool | None = None,
        skip_special_tokens: bool = True,
        clean_up_tokenization_spaces: bool | None = None,
    ) -> list[dict]:
        sequences = model_outputs["generated_sequence"]  # (B, n, L + new)
        input_ids, mask = model_outputs["input_ids"], model_outputs["attention_mask"]
        prompt_length = input_ids.shape[-1]
        texts, prompts = _as_list(model_outputs["input_text"]), _as_list(model_outputs["prompt_text"])
        errors = model_outputs.get("error")
        errors = [errors] if errors is None or isinstance(errors, str) else list(errors)
        records = []
        for row in range(sequences.shape[0]):
            shown = texts[row].messages if isinstance(texts[row], Chat) else texts[row]
            error = errors[row] if row < len(errors) else None
            if error is not None:
                records.append({"input_text": shown, "error": error})
                continue
            for candidate in sequences[row]:
                new_ids = candidate[prompt_length:]
                if return_tensors:
                    prompt_ids = input_ids[row][mask[row].bool()]  # drop the left padding
                    records.append({"input_text": shown, "generated_token_ids": torch.cat([prompt_ids, new_ids])})
                    continue
                answer = self.processor.decode(
                    new_ids,
                    skip_special_tokens=skip_special_tokens,
                    clean_up_tokenization_spaces=clean_up_tokenization_spaces,
                )
                if return_full_text:
                    answer = _full_text(texts[row], prompts[row], answer, continue_final_message)
                records.append({"input_text": shown, "generated_text": answer})
        return records

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """Save model, processor and this pipeline's code; the config gets a `custom_pipelines` entry, so the folder
        (or a Hub repo made from it, e.g. with `push_to_hub`) opens with `pipeline(..., trust_remote_code=True)`
        where this package is not installed."""
        config = self.model.config
        before = getattr(config, "custom_pipelines", None)
        add_custom_pipeline_to_config(config)
        try:
            save_pipeline_code(save_directory)
            self.model.save_pretrained(save_directory, export_code=True, **kwargs)
        finally:
            # Only the saved copy names the pipeline: a later plain `model.save_pretrained` stays as it was.
            if before is None:
                del config.custom_pipelines
            else:
                config.custom_pipelines = before
        self.processor.save_pretrained(save_directory, export_code=True)


def _full_text(text: str | Chat, prompt: str, answer: str, continue_final_message: bool | None) -> Any:
    """Prompt + answer: a string for string prompts, the extended conversation for chats."""
    if not isinstance(text, Chat):
        return prompt + answer
    messages = [dict(m) for m in text.messages]
    if continue_final_message is None:
        continue_final_message = messages[-1]["role"] == "assistant"
    if not continue_final_message:
        return messages + [{"role": "assistant", "content": answer.strip()}]
    last = messages[-1]
    if isinstance(last["content"], str):
        last["content"] = last["content"] + answer
    else:
        items = [dict(item) for item in last["content"]]
        text_items = [i for i, item in enumerate(items) if item.get("type") == "text"]
        if text_items:
            items[text_items[-1]]["text"] = items[text_items[-1]]["text"] + answer
        else:
            items.append({"type": "text", "text": answer})
        last["content"] = items
    return messages


class _Rows(torch.utils.data.Dataset):
    """A `datasets.Dataset` as the torch Dataset the base Pipeline streams from (row i -> dict)."""

    def __init__(self, rows) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        return self.rows[index]


def _is_sample_source(value: Any) -> bool:
    """A dict sample, a list of them, a dataset or a generator (anything that is not itself a video)."""
    if isinstance(value, dict):
        return True
    if isinstance(value, (list, tuple)):
        return len(value) > 0 and all(isinstance(v, dict) and not is_valid_message(v) for v in value)
    if hasattr(value, "features") and hasattr(value, "column_names"):  # a datasets.Dataset (it has a .shape too)
        return True
    return hasattr(value, "__iter__") and not isinstance(value, (torch.Tensor,)) and not hasattr(value, "shape")


# ----------------------------------------------------------------------------------------------------------------
# Registration and Hub metadata
# ----------------------------------------------------------------------------------------------------------------


def custom_pipeline_entry() -> dict:
    """The `custom_pipelines` entry for this task, in the form `Pipeline.save_pretrained` writes to config.json."""
    module = VideoTextToTextPipeline.__module__.rsplit(".", 1)[-1]
    return {
        "impl": f"{module}.{VideoTextToTextPipeline.__name__}",
        "pt": [AutoModelForImageTextToText.__name__],
        "type": PIPELINE_TYPE,
    }


def add_custom_pipeline_to_config(config) -> Any:
    """Add this task to `config.custom_pipelines` (kept entries for other tasks) and return the config.

    Saved with `save_pretrained`, it lets `pipeline("video-text-to-text", model=repo, trust_remote_code=True)` find
    the pipeline class in the repo's `pipeline_video_text_to_text.py` (copy it with `save_pipeline_code`).
    Note: Transformers asks for `trust_remote_code=True` for a task named in `custom_pipelines` even when the task
    is also registered locally, so plain local checkpoints are best saved without this entry."""
    entries = dict(getattr(config, "custom_pipelines", None) or {})
    entries[TASK] = custom_pipeline_entry()
    config.custom_pipelines = entries
    return config


def save_pipeline_code(save_directory: str | os.PathLike) -> list:
    """Copy this module and the sibling modules it imports (recursively) into `save_directory`."""
    os.makedirs(save_directory, exist_ok=True)
    return custom_object_save(VideoTextToTextPipeline, save_directory)


def register_pipeline() -> None:
    """Register the `video-text-to-text` task in Transformers' pipeline registry (idempotent)."""
    current = PIPELINE_REGISTRY.supported_tasks.get(TASK)
    if current is not None and current.get("impl") is VideoTextToTextPipeline:
        return
    PIPELINE_REGISTRY.register_pipeline(
        TASK, pipeline_class=VideoTextToTextPipeline, pt_model=AutoModelForImageTextToText, type=PIPELINE_TYPE
    )


__all__ = [
    "PromptTruncatedWarning",
    "TASK",
    "VideoTextToTextPipeline",
    "add_custom_pipeline_to_config",
    "collate_left_padded",
    "custom_pipeline_entry",
    "load_image",
    "load_processor",
    "register_pipeline",
    "save_pipeline_code",
    "split_chat_media",
]
