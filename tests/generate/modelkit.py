"""A small OpenAI-compatible model server of the tests' own: real HTTP on 127.0.0.1, port 0.

``FakeModel`` serves ``POST /v1/chat/completions`` with trio and h11 (the sans-IO HTTP/1.1
library httpx itself sits on). What it does with each request comes from ``script`` (one
behaviour per request, in order) and then ``default``:

- ``good``: as many valid questions of the asked kind as the prompt asks for, each with a
  prompt never used before (a serial number), or ``good_repeat`` (the same questions each time);
- ``malformed``: message content that is not JSON;
- ``invalid``: questions that each break one rule (duplicate choices, an answer that is not a
  choice, NaN, infinity, no accepted answers);
- ``half``: one valid question for every invalid one;
- ``stall``: read the request, never answer (the connection stays open);
- ``fail``: HTTP 500 with an OpenAI-style error body;
- ``refuse``: HTTP 401 with an OpenAI-style error body;
- ``html``: HTTP 200 with an HTML page (a server that is not an OpenAI API).

``requests`` keeps every parsed request body and ``headers`` their headers, so tests can check
what the client sent.
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

import h11
import trio

BEHAVIOURS = ("good", "good_repeat", "malformed", "invalid", "half", "stall", "fail",
              "refuse", "html")
_COUNT = re.compile(r"Write (\d+) quiz question")
_TOPIC = re.compile(r"quiz questions? about: (.*)\.\n")


class FakeModel:
    def __init__(self) -> None:
        self.script: list[str] = []
        self.default = "good"
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.serial = 0
        self.base_url = ""  # set by the fixture once listening
        #: set when a request has been read completely (tests waiting on a stall use it)
        self.request_seen = trio.Event()

    # --- the HTTP side ----------------------------------------------------------------------

    async def handle(self, stream: trio.SocketStream) -> None:
        # A client that hangs up (its timeout) is normal here, not a failure of the server.
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self._serve(stream)

    async def _serve(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        async with stream:
            while True:
                request: h11.Request | None = None
                body = b""
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        conn.receive_data(await stream.receive_some(65536))
                        continue
                    if isinstance(event, h11.Request):
                        request = event
                    elif isinstance(event, h11.Data):
                        body += event.data
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    elif isinstance(event, h11.ConnectionClosed):
                        return
                assert request is not None
                status, payload = await self._answer(request, body)
                for out in (
                    h11.Response(status_code=status, headers=[
                        ("content-type", "application/json"),
                        ("content-length", str(len(payload))),
                    ]),
                    h11.Data(data=payload),
                    h11.EndOfMessage(),
                ):
                    await stream.send_all(conn.send(out) or b"")
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()

    async def _answer(self, request: h11.Request, body: bytes) -> tuple[int, bytes]:
        if request.method != b"POST" or request.target != b"/v1/chat/completions":
            return 404, b'{"error": {"message": "not found"}}'
        data = json.loads(body)
        self.requests.append(data)
        self.headers.append({k.decode(): v.decode() for k, v in request.headers})
        self.request_seen.set()
        behaviour = self.script.pop(0) if self.script else self.default
        assert behaviour in BEHAVIOURS, behaviour
        if behaviour == "stall":
            await trio.sleep_forever()  # cancelled when the test's nursery closes
        if behaviour == "fail":
            return 500, b'{"error": {"message": "model crashed: out of memory"}}'
        if behaviour == "refuse":
            return 401, b'{"error": {"message": "invalid API key", "type": "auth"}}'
        if behaviour == "html":
            return 200, b"<html><body>It works!</body></html>"
        content = self.content(behaviour, data)
        return 200, json.dumps({
            "id": "chatcmpl-test", "object": "chat.completion", "model": data.get("model"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
        }).encode()

    # --- what the "model" says --------------------------------------------------------------

    def content(self, behaviour: str, data: dict[str, Any]) -> str:
        user = data["messages"][-1]["content"]
        n = int(_COUNT.search(user).group(1))  # type: ignore[union-attr]
        topic = _TOPIC.search(user).group(1)  # type: ignore[union-attr]
        kind = kind_of(data["response_format"]["json_schema"]["schema"])
        if behaviour == "malformed":
            return '{"questions": [{"prompt": "Who sang'
        if behaviour == "invalid":
            return json.dumps({"questions": [invalid_question(kind, i) for i in range(n)]})
        questions = []
        for i in range(n):
            if behaviour == "half" and i % 2:
                questions.append(invalid_question(kind, i))
                continue
            if behaviour == "good_repeat":
                serial = i + 1
            else:
                self.serial += 1
                serial = self.serial
            questions.append(good_question(kind, topic, serial))
        return json.dumps({"questions": questions})


def kind_of(schema: dict[str, Any]) -> str:
    properties = schema["properties"]["questions"]["items"]["properties"]
    if "choices" in properties:
        return "choice"
    if "answers" in properties:
        return "text"
    return "numeric"


def good_question(kind: str, topic: str, serial: int) -> dict[str, Any]:
    prompt = f"Question {serial} about {topic}?"
    if kind == "choice":
        return {"prompt": prompt, "choices": ["Blur", "Oasis", "Pulp", "Suede"],
                "answer": "Oasis", "explanation": "Wonderwall, 1995."}
    if kind == "text":
        return {"prompt": prompt, "answers": ["The Verve", "Verve"], "explanation": ""}
    return {"prompt": prompt, "answer": 1990 + serial % 10, "tolerance": 0, "unit": "",
            "explanation": ""}


def invalid_question(kind: str, i: int) -> Any:
    prompt = f"Broken question {i}?"
    if kind == "choice":
        return [
            {"prompt": prompt, "choices": ["Blur", "blur", "Pulp", "Suede"], "answer": "Pulp",
             "explanation": ""},
            {"prompt": prompt, "choices": ["Blur", "Oasis", "Pulp", "Suede"],
             "answer": "Radiohead", "explanation": ""},
            {"prompt": "", "choices": ["A", "B"], "answer": "A", "explanation": ""},
        ][i % 3]
    if kind == "text":
        return {"prompt": prompt, "answers": [], "explanation": ""}
    # NaN and Infinity: json.dumps writes them, and many JSON parsers (Python's too) read them.
    return {"prompt": prompt, "answer": [float("nan"), float("inf")][i % 2], "tolerance": 0,
            "unit": "", "explanation": ""}
