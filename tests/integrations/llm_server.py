"""A local HTTP server on loopback that answers like the OpenAI and Anthropic APIs: chat
completions, completions, responses, embeddings and messages, plain or as server-sent
event streams with the usage in their last events. It counts the requests it gets and keeps
the usage it reported, so a test can compare what was booked with what was billed.

The usage is a function of the request: prompt tokens are a quarter of the body's bytes (a
real tokenizer's count is below the byte count too), output tokens are `OUTPUT` per choice
or the request's limit if lower. A model named `bad-request` gets a 400, `bad-usage` a
usage that does not add up; `slow-*` models' streams wait for `release` after their first
event, so a test can cancel one halfway.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

OUTPUT = 12


class LLMServer:
    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.bodies: list[dict[str, Any]] = []
        self.usages: list[tuple[str, str, dict[str, Any]]] = []  # (path, model, usage)
        self.tiers: list[str] = []  # the service tier each usage was served in
        self.project_tier = "default"  # what a request naming no tier (or `auto`) gets
        self.workspace_geo = "global"  # where an Anthropic request naming no region runs
        self.forced_geo: str | None = None  # where every Anthropic request runs, if set
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.streaming = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Headers and body go out as they are written, not 40 ms later (Nagle's
                # algorithm against the client's delayed ACK).
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                body = json.loads(raw)
                with server.lock:
                    server.requests[self.path] += 1
                    server.bodies.append(body)
                if body.get("model") == "bad-request":
                    self._json(400, {"error": {"message": "bad model", "type": "invalid"}})
                    return
                prompt = len(raw) // 4
                kind = self.path.rsplit("/", 1)[-1]
                if kind == "messages":
                    self._messages(body, prompt)
                elif kind == "responses":
                    self._responses(body, prompt)
                elif kind == "embeddings":
                    usage = {"prompt_tokens": prompt, "total_tokens": prompt}
                    server.billed(self.path, body, usage)
                    data = [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}]
                    self._json(
                        200,
                        {"object": "list", "data": data, "model": body["model"], "usage": usage},
                    )
                else:
                    self._chat(body, prompt, kind)

            def _output(self, body: dict[str, Any], *keys: str) -> int:
                limit = next((body[k] for k in keys if body.get(k) is not None), OUTPUT)
                return min(OUTPUT, limit) * body.get("n", 1)

            def _chat(self, body: dict[str, Any], prompt: int, kind: str) -> None:
                output = self._output(body, "max_completion_tokens", "max_tokens")
                reasoning = output // 3 if body["model"].startswith("think") else 0
                usage = {
                    "prompt_tokens": prompt,
                    "completion_tokens": output,
                    "total_tokens": prompt + output,
                    "prompt_tokens_details": {"cached_tokens": prompt // 2},
                    "completion_tokens_details": {"reasoning_tokens": reasoning},
                }
                if body["model"] == "bad-usage":  # more cached tokens than prompt tokens
                    usage["prompt_tokens_details"] = {"cached_tokens": prompt + 5}
                chat = kind == "completions" and "chat" in self.path
                obj = "chat.completion" if chat else "text_completion"
                tier = server.served(body)
                if not body.get("stream"):
                    server.billed(self.path, body, usage)
                    choice: dict[str, Any] = {"index": 0, "finish_reason": "stop"}
                    if chat:
                        choice["message"] = {"role": "assistant", "content": "hello"}
                    else:
                        choice["text"] = "hello"
                    self._json(
                        200,
                        {
                            "id": "x",
                            "object": obj,
                            "created": 1,
                            "model": body["model"],
                            "choices": [choice],
                            "usage": usage,
                            "service_tier": tier,
                        },
                    )
                    return

                def events() -> Iterator[dict[str, Any] | str]:
                    for word in ("hel", "lo", "!"):
                        if chat:
                            delta = {"index": 0, "delta": {"content": word}, "finish_reason": None}
                        else:
                            delta = {"index": 0, "text": word, "finish_reason": None}
                        yield {
                            "id": "x",
                            "object": f"{obj}.chunk",
                            "created": 1,
                            "model": body["model"],
                            "choices": [delta],
                            "service_tier": tier,
                        }
                    if (body.get("stream_options") or {}).get("include_usage"):
                        server.billed(self.path, body, usage)
                        yield {
                            "id": "x",
                            "object": f"{obj}.chunk",
                            "created": 1,
                            "model": body["model"],
                            "choices": [],
                            "usage": usage,
                            "service_tier": tier,
                        }
                    yield "[DONE]"

                self._stream(body, events())

            def _responses(self, body: dict[str, Any], prompt: int) -> None:
                output = self._output(body, "max_output_tokens")
                usage = {
                    "input_tokens": prompt,
                    "output_tokens": output,
                    "total_tokens": prompt + output,
                    "input_tokens_details": {"cached_tokens": 0},
                    "output_tokens_details": {"reasoning_tokens": 0},
                }
                response = {
                    "id": "r",
                    "object": "response",
                    "created_at": 1,
                    "status": "completed",
                    "model": body["model"],
                    "output": [],
                    "usage": usage,
                    "service_tier": server.served(body),
                }
                if not body.get("stream"):
                    server.billed(self.path, body, usage)
                    self._json(200, response)
                    return

                def events() -> Iterator[dict[str, Any] | str]:
                    yield {
                        "type": "response.created",
                        "sequence_number": 0,
                        "response": {**response, "status": "in_progress", "usage": None},
                    }
                    for i, word in enumerate(("hel", "lo")):
                        yield {
                            "type": "response.output_text.delta",
                            "sequence_number": i + 1,
                            "item_id": "m",
                            "output_index": 0,
                            "content_index": 0,
                            "delta": word,
                            "logprobs": [],
                        }
                    server.billed(self.path, body, usage)
                    yield {"type": "response.completed", "sequence_number": 3, "response": response}

                self._stream(body, events())

            def _messages(self, body: dict[str, Any], prompt: int) -> None:
                output = self._output(body, "max_tokens")
                usage = {
                    "input_tokens": prompt,
                    "output_tokens": output,
                    "cache_read_input_tokens": 0,
                    "cache_creation_input_tokens": 0,
                    "service_tier": "priority" if server.served(body) == "priority" else "standard",
                    "inference_geo": server.forced_geo
                    or body.get("inference_geo")
                    or server.workspace_geo,
                    "speed": body.get("speed") or "standard",
                }
                message = {
                    "id": "m",
                    "type": "message",
                    "role": "assistant",
                    "model": body["model"],
                    "content": [{"type": "text", "text": "hello"}],
                    "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "usage": usage,
                }
                if not body.get("stream"):
                    server.billed(self.path, body, usage)
                    self._json(200, message)
                    return

                def events() -> Iterator[dict[str, Any] | str]:
                    start = {
                        **message,
                        "content": [],
                        "stop_reason": None,
                        "usage": {**usage, "output_tokens": 1},
                    }
                    yield {"type": "message_start", "message": start}
                    yield {
                        "type": "content_block_start",
                        "index": 0,
                        "content_block": {"type": "text", "text": ""},
                    }
                    for word in ("hel", "lo"):
                        yield {
                            "type": "content_block_delta",
                            "index": 0,
                            "delta": {"type": "text_delta", "text": word},
                        }
                    yield {"type": "content_block_stop", "index": 0}
                    server.billed(self.path, body, usage)
                    yield {
                        "type": "message_delta",
                        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                        "usage": {"output_tokens": output},
                    }
                    yield {"type": "message_stop"}

                self._stream(body, events())

            def _json(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, body: dict[str, Any], events: Iterator[dict[str, Any] | str]) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                slow = body["model"].startswith("slow")
                try:
                    for i, event in enumerate(events):
                        if slow and i == 1:
                            server.streaming.set()
                            server.release.wait(30)
                        typed = isinstance(event, dict) and "type" in event
                        name = f"event: {event['type']}\n" if typed else ""  # type: ignore[index]
                        data = event if isinstance(event, str) else json.dumps(event)
                        self._chunk(f"{name}data: {data}\n\n".encode())
                    self._chunk(b"")
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def served(self, body: dict[str, Any]) -> str:
        """The service tier a request is served in, as OpenAI names it."""
        asked = body.get("service_tier")
        return self.project_tier if asked in (None, "auto") else str(asked)

    def billed(self, path: str, body: dict[str, Any], usage: dict[str, Any]) -> None:
        """Note a call's usage, and the variant it was billed in: its service tier, or
        for Anthropic's the fast mode and US region it reports (`fast_mode_us`...)."""
        fast = "fast_mode" if usage.get("speed") == "fast" else ""
        us = "us" if str(usage.get("inference_geo")).lower() == "us" else ""
        with self.lock:
            self.usages.append((path, body["model"], usage))
            self.tiers.append("_".join(filter(None, (fast, us))) or self.served(body))

    def __enter__(self) -> LLMServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def total(self) -> int:
        with self.lock:
            return sum(self.requests.values())


def wait_until(flag: threading.Event, what: str) -> None:
    if not flag.wait(30):
        raise AssertionError(f"timed out waiting for {what}")
    time.sleep(0)
