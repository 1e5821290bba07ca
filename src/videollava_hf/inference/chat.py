"""Multi-turn chat about one video or image that encodes the media once and reuses the KV cache across turns.

Each turn appends only the new tokens ("USER: {question} ASSISTANT:") to the conversation so far; the towers run at
the first turn only, and later turns prefill just their own tokens on top of the cached prefix.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import DynamicCache

from ..models.videollava._compat import CACHE_NAME


class ChatSession:
    """A conversation in the original llava_v1 format with a [`VideoLlavaForConditionalGeneration`].

    Args:
        model, processor: a Video-LLaVA model and its processor.
        video / image: the media attached to the first turn (anything the processor accepts), or neither.
        add_system_prompt (`bool`): start with the original system prompt (default True).
        processor_kwargs: extra keyword arguments for the first processor call (frame policy, pooling).
    """

    def __init__(self, model, processor, video: Any = None, image: Any = None, add_system_prompt: bool = True,
                 **processor_kwargs):
        if video is not None and image is not None:
            raise ValueError("Attach either a video or an image to a chat, not both.")
        self.model = model
        self.processor = processor
        self.video, self.image = video, image
        self.add_system_prompt = add_system_prompt
        self.processor_kwargs = processor_kwargs
        self.messages: list[dict] = []
        self.input_ids: torch.Tensor | None = None  # (1, L): the whole conversation so far
        self.cache = DynamicCache()
        self.vision_calls = 0
        self.last_prompt_length = 0  # tokens of the conversation before the latest answer

    def _first_turn_inputs(self, question: str):
        content = []
        if self.video is not None:
            content.append({"type": "video"})
        if self.image is not None:
            content.append({"type": "image"})
        content.append({"type": "text", "text": question})
        self.messages.append({"role": "user", "content": content})
        prompt = self.processor.apply_chat_template(
            self.messages, add_generation_prompt=True, tokenize=False, add_system_prompt=self.add_system_prompt
        )
        media = {}
        if self.video is not None:
            media["videos"] = self.video
        if self.image is not None:
            media["images"] = self.image
        self.vision_calls += 1
        return self.processor(text=prompt, return_tensors="pt", **media, **self.processor_kwargs)

    def _next_turn_inputs(self, question: str):
        self.messages.append({"role": "user", "content": [{"type": "text", "text": question}]})
        # The previous answer already ends with `</s>` (generated EOS); add only the new user turn, tokenized as it
        # is in the whole prompt, after `</s>` (with a SentencePiece tokenizer, `legacy` decides whether "USER"
        # then starts with the dummy prefix `▁`): encode "</s>USER: ..." and drop the `</s>`.
        tokenizer = self.processor.tokenizer
        ids = tokenizer(f"{tokenizer.eos_token}USER: {question} ASSISTANT:", add_special_tokens=False)["input_ids"]
        suffix = torch.tensor([ids[1:] if ids[:1] == [tokenizer.eos_token_id] else ids])
        ids = torch.cat([self.input_ids, suffix.to(self.input_ids.device)], dim=1)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    def ask(self, question: str, **generate_kwargs) -> str:
        """Answer `question` (greedy by default); returns the decoded answer."""
        inputs = self._first_turn_inputs(question) if self.input_ids is None else self._next_turn_inputs(question)
        inputs = inputs.to(self.model.device) if hasattr(inputs, "to") else inputs
        generate_kwargs.setdefault("do_sample", False)
        generate_kwargs.setdefault("max_new_tokens", 128)
        out = self.model.generate(**inputs, **{CACHE_NAME: self.cache}, return_dict_in_generate=True,
                                  **generate_kwargs)
        sequences = out.sequences
        eos = self.processor.tokenizer.eos_token_id
        if sequences[0, -1].item() != eos:  # stopped by length: close the turn as the template does
            sequences = torch.cat([sequences, torch.tensor([[eos]], device=sequences.device)], dim=1)
        self.last_prompt_length = inputs["input_ids"].shape[1]
        new_tokens = sequences[0, self.last_prompt_length:]
        self.input_ids = sequences
        answer = self.processor.tokenizer.decode(new_tokens, skip_special_tokens=True).strip()
        self.messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
        return answer


__all__ = ["ChatSession"]
