"""Load test for `videollava-hf serve`: N chat requests (the bundled clip + one question) at a given concurrency,
sent with the official `openai` client; prints requests/s and latency percentiles.

    python benchmarks/serve_load.py --requests 40 --concurrency 1 4 8           # starts the demo-model server
    python benchmarks/serve_load.py --base-url http://127.0.0.1:8000/v1 --model NAME --media-url file:///clip.mp4
"""

from __future__ import annotations

import argparse
import base64
import os
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor


def _start_server() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-c", "import sys; from videollava_hf.cli import main; sys.exit(main())", "serve",
           "--port", str(port), "--log-level", "warning"]
    return subprocess.Popen(cmd), f"http://127.0.0.1:{port}/v1"


def _wait(client, deadline: float = 120.0) -> None:
    import openai

    start = time.time()
    while True:
        try:
            client.models.list()
            return
        except openai.APIConnectionError:
            if time.time() - start > deadline:
                raise
            time.sleep(0.3)


def run(client, model: str, url: str, requests: int, concurrency: int, stream: bool, max_tokens: int) -> dict:
    messages = [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": url}},
                                             {"type": "text", "text": "What colour is the shape?"}]}]

    def one(_):
        t0 = time.perf_counter()
        if stream:
            text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
                model=model, messages=messages, max_tokens=max_tokens, stream=True) if c.choices)
        else:
            text = client.chat.completions.create(model=model, messages=messages,
                                                  max_tokens=max_tokens).choices[0].message.content
        return time.perf_counter() - t0, text

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, range(requests)))
    wall = time.perf_counter() - t0
    latencies = sorted(r[0] for r in results)
    return {"concurrency": concurrency, "requests": requests, "req_per_s": requests / wall,
            "p50_s": statistics.median(latencies), "p95_s": latencies[int(0.95 * (len(latencies) - 1))],
            "answers": sorted({r[1] for r in results})}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", default=None, help="A running server's /v1 URL (default: start the demo).")
    parser.add_argument("--model", default="videollava-hf-demo")
    parser.add_argument("--media-url", default=None, help="Video URL to send (default: the sample clip as data:).")
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--stream", action="store_true")
    args = parser.parse_args(argv)

    import openai

    from videollava_hf.demo import sample_video_path

    server = None
    base_url = args.base_url
    if base_url is None:
        server, base_url = _start_server()
    url = args.media_url or "data:video/mp4;base64," + base64.b64encode(sample_video_path().read_bytes()).decode()
    client = openai.OpenAI(base_url=base_url, api_key=os.environ.get("OPENAI_API_KEY", "unused"), max_retries=0,
                           timeout=600)
    try:
        _wait(client)
        run(client, args.model, url, 2, 1, args.stream, args.max_tokens)  # warm-up
        for concurrency in args.concurrency:
            r = run(client, args.model, url, args.requests, concurrency, args.stream, args.max_tokens)
            print(f"concurrency {r['concurrency']:>2}: {r['req_per_s']:.2f} req/s, p50 {r['p50_s'] * 1000:.0f} ms, "
                  f"p95 {r['p95_s'] * 1000:.0f} ms, answers {r['answers']}")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
