"""The OpenAI-compatible HTTP API (FastAPI): /v1/models, /v1/chat/completions (JSON or server-sent events), /health.

    >>> from videollava_hf.serving import create_app, load_engine
    >>> app = create_app(load_engine(None), model_name="videollava-hf-demo")   # serve with uvicorn.run(app)

Errors use OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, so the `openai` client raises
`BadRequestError` (400) with the message: unreadable media, unsupported fields, a prompt longer than the context.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse

from .engine import Engine, QueueStreamer, Result
from .protocol import RequestError, parse_chat_request

logger = logging.getLogger(__name__)


def create_app(engine: Engine, model_name: str, root_path: str = "") -> FastAPI:
    """An app serving `engine` under the model id `model_name`; `root_path` is the prefix a proxy mounts it at."""
    created = int(time.time())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        engine.close()

    app = FastAPI(title="videollava-hf", root_path=root_path, lifespan=lifespan)

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, err: RequestError):
        return _error(err.status, str(err), err.param, err.code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, err: RequestValidationError):
        return _error(400, f"Invalid request: {err.errors()}")

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [_model_card(model_name, created)]}

    @app.get("/v1/models/{name:path}")
    async def model(name: str):
        _check_model(name, model_name)
        return _model_card(model_name, created)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise RequestError(f"The request body is not valid JSON ({err}).") from err
        parsed = parse_chat_request(body)
        _check_model(body.get("model"), model_name)
        engine.check_capacity()
        prepared = await run_in_threadpool(engine.prepare, parsed)  # media decode off the event loop
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        if parsed.stream:
            return StreamingResponse(
                _events(engine, prepared, completion_id, model_name, parsed.include_usage),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},  # nginx: pass events through
            )
        try:
            result = await engine.run(prepared)
        except Exception as err:  # noqa: BLE001 - a failed generate() answers this request, never stops the server
            logger.exception("generation failed")
            return _error(500, f"Generation failed: {type(err).__name__}: {err}", type_="server_error")
        return {
            "id": completion_id, "object": "chat.completion", "created": int(time.time()), "model": model_name,
            "choices": [{
                "index": 0, "message": {"role": "assistant", "content": result.text},
                "finish_reason": result.finish_reason, "logprobs": None,
            }],
            "usage": _usage(prepared.prompt_tokens, result),
        }

    return app


async def _events(engine: Engine, prepared, completion_id: str, model_name: str, include_usage: bool):
    """Server-sent events: a role chunk, content chunks as text is decoded, a finish chunk, [usage], [DONE]."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    cancel = threading.Event()
    task = asyncio.ensure_future(
        engine.run(prepared, QueueStreamer(engine.processor.tokenizer, loop, queue), cancel)
    )
    task.add_done_callback(lambda _: queue.put_nowait(None))  # after every piece of text (same loop, FIFO)

    def chunk(delta: dict, finish_reason=None, usage=None) -> str:
        payload = {
            "id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": model_name,
            "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
        }
        if usage:
            payload["usage"] = usage
        return f"data: {json.dumps(payload)}\n\n"

    try:
        yield chunk({"role": "assistant", "content": ""})
        started = False
        while (text := await queue.get()) is not None:
            if not started:  # the model starts its answer with the space after "ASSISTANT:"
                text = text.lstrip()
                started = bool(text)
            if text:
                yield chunk({"content": text})
        result: Result = await task
        yield chunk({}, finish_reason=result.finish_reason)
        if include_usage:
            yield chunk({}, usage=_usage(prepared.prompt_tokens, result))
    except Exception as err:  # noqa: BLE001 - headers are sent: report in the stream, keep serving others
        logger.exception("generation failed")
        yield f"data: {json.dumps({'error': {'message': f'Generation failed: {err}', 'type': 'server_error'}})}\n\n"
    finally:
        cancel.set()  # no-op when finished; stops generate() when the client disconnected mid-stream
    yield "data: [DONE]\n\n"


def _usage(prompt_tokens: int, result: Result) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": result.completion_tokens,
            "total_tokens": prompt_tokens + result.completion_tokens}


def _model_card(name: str, created: int) -> dict:
    return {"id": name, "object": "model", "created": created, "owned_by": "videollava-hf"}


def _check_model(requested, served: str) -> None:
    if requested is not None and requested != served:
        raise RequestError(f"The model {requested!r} is not served here; this server serves {served!r}.",
                           "model", status=404, code="model_not_found")


def _error(status: int, message: str, param: str | None = None, code: str | None = None,
           type_: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse(status_code=status,
                        content={"error": {"message": message, "type": type_, "param": param, "code": code}})


__all__ = ["create_app"]
