"""OpenAI chat-completion requests -> the model's chat messages, media and generation settings.

Everything a client can get wrong is checked here and raised as `RequestError` (HTTP 400, OpenAI's error shape),
before any work is queued.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ROLES = ("system", "developer", "user", "assistant")
# Fields of the OpenAI schema this server does not implement: refused rather than silently ignored.
UNSUPPORTED_FIELDS = (
    "tools", "tool_choice", "functions", "function_call", "response_format", "logprobs", "top_logprobs", "logit_bias",
    "stop", "audio", "modalities", "prediction", "presence_penalty", "frequency_penalty",
)


class RequestError(ValueError):
    """A request the server cannot serve as sent; `param` names the offending field (OpenAI's `error.param`)."""

    def __init__(self, message: str, param: str | None = None, status: int = 400, code: str | None = None):
        super().__init__(message)
        self.param = param
        self.status = status
        self.code = code


@dataclass
class ChatRequest:
    messages: list[dict]  # the chat template's format: content items {"type": "text" | "image" | "video"}
    media: list[tuple[str, str, str]]  # (kind, url, where) in prompt order
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stream: bool = False
    include_usage: bool = False
    extra: dict = field(default_factory=dict)


def parse_chat_request(body: Any) -> ChatRequest:
    if not isinstance(body, dict):
        raise RequestError("The request body must be a JSON object.")
    if "messages" not in body:
        raise RequestError("'messages' is required.", "messages")
    for name in UNSUPPORTED_FIELDS:
        if body.get(name) is not None:
            raise RequestError(f"'{name}' is not supported by this server; leave it out.", name)
    n = body.get("n")
    if n not in (None, 1):
        raise RequestError(f"'n' must be 1 (one answer per request); got {n!r}.", "n")
    messages, media = _convert_messages(body["messages"])
    stream_options = body.get("stream_options") or {}
    return ChatRequest(
        messages=messages,
        media=media,
        max_tokens=_number(body, ("max_completion_tokens", "max_tokens"), int, low=1),
        temperature=_number(body, ("temperature",), float, low=0.0, high=2.0),
        top_p=_number(body, ("top_p",), float, low=0.0, high=1.0, low_open=True),
        seed=_number(body, ("seed",), int),
        stream=bool(body.get("stream", False)),
        include_usage=bool(isinstance(stream_options, dict) and stream_options.get("include_usage")),
    )


def _number(body: dict, names: tuple[str, ...], kind: type, low=None, high=None, low_open=False):
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
            raise RequestError(f"'{name}' must be {'an integer' if kind is int else 'a number'}; got {value!r}.", name)
        value = kind(value)
        if (low is not None and (value <= low if low_open else value < low)) or (high is not None and value > high):
            bounds = f"{'>' if low_open else '>='} {low}" + (f" and <= {high}" if high is not None else "")
            raise RequestError(f"'{name}' must be {bounds}; got {value!r}.", name)
        return value
    return None


def _convert_messages(messages: Any) -> tuple[list[dict], list[tuple[str, str, str]]]:
    """OpenAI messages -> chat-template messages plus the media URLs in the order the template places them."""
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty list.", "messages")
    converted, media = [], []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise RequestError(f"{where} must be an object with 'role' and 'content'.", "messages")
        role = message.get("role")
        if role not in ROLES:
            raise RequestError(
                f"{where}.role is {role!r}; Video-LLaVA chats have system, user and assistant messages.", "messages"
            )
        role = "system" if role == "developer" else role
        if role == "system" and i != 0:
            raise RequestError(f"{where}: only the first message may be a system message.", "messages")
        content = message.get("content")
        if isinstance(content, str):
            converted.append({"role": role, "content": content})
            continue
        if not isinstance(content, list):
            raise RequestError(f"{where}.content must be a string or a list of content parts.", "messages")
        items = []
        for j, part in enumerate(content):
            part_where = f"{where}.content[{j}]"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                items.append({"type": "text", "text": str(part.get("text", ""))})
            elif kind in ("image_url", "video_url"):
                if role != "user":
                    raise RequestError(f"{part_where}: images and videos go in user messages.", "messages")
                target = part.get(kind)
                url = target.get("url") if isinstance(target, dict) else target  # {"url": ...} or a bare string
                media.append((kind.removesuffix("_url"), url, part_where))
                items.append({"type": kind.removesuffix("_url")})
            else:
                raise RequestError(
                    f"{part_where}: content part type {kind!r} is not supported; use 'text', 'image_url' or "
                    "'video_url'.", "messages",
                )
        converted.append({"role": role, "content": items})
    if converted[-1]["role"] != "user":
        raise RequestError("The last message must be a user message (the server writes the assistant's reply).",
                           "messages")
    return converted, media


__all__ = ["ChatRequest", "RequestError", "UNSUPPORTED_FIELDS", "parse_chat_request"]
