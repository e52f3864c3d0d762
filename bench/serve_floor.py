"""Reference proxies for bench/serve.py: what the cheapest possible server costs here.

Each is a bare ASGI app on the same socket and uvicorn settings as ``tanglebrain serve``:
it reads the chat request, forwards it to one upstream model and relays the streamed
answer, with no routing, no trace and no ledger.

* ``raw``: forwards over a plain asyncio socket and relays the upstream bytes: the floor
  of any Python HTTP proxy on this machine.
* ``litellm``: makes the upstream call with ``litellm.acompletion(stream=True)`` and
  re-encodes its chunks as SSE: the floor of a proxy built on litellm, as tanglebrain is.

Usage: python bench/serve_floor.py --mode raw|litellm --port P --upstream URL --model M
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from typing import Any

import uvicorn

from tanglebrain.serve import uvicorn_config
from tanglebrain.sockets import bind_socket

Scope = dict[str, Any]


def build(mode: str, upstream: str, model: str) -> Any:
    host, port, path = re.match(r"http://([^:/]+):(\d+)(/.*)", upstream).groups()  # type: ignore[union-attr]
    lib: Any = None
    if mode == "litellm":
        from tanglebrain.models._litellm import (
            litellm,  # the same configured import tanglebrain uses
        )

        lib = litellm()

    async def read(receive: Any) -> bytes:
        parts = []
        while True:
            message = await receive()
            parts.append(message.get("body", b""))
            if not message.get("more_body"):
                return b"".join(parts)

    async def raw(body: dict[str, Any], send: Any) -> None:
        body["model"] = model
        data = json.dumps(body).encode()
        head = (
            f"POST {path}/chat/completions HTTP/1.0\r\nHost: {host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        ).encode()
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(head + data)
        await reader.readuntil(b"\r\n\r\n")  # HTTP/1.0: no chunked framing, body to EOF
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})  # fmt: skip
        while data := await reader.read(65536):
            await send({"type": "http.response.body", "body": data, "more_body": True})
        writer.close()
        await send({"type": "http.response.body", "body": b""})

    async def via_litellm(body: dict[str, Any], send: Any) -> None:
        for attempt in range(3):  # like tanglebrain, retry a pooled connection gone stale
            try:
                stream = await lib.acompletion(
                    model=f"openai/{model}",
                    api_base=upstream,
                    api_key="no-key-needed",
                    messages=body["messages"],
                    stream=True,
                    stream_options={"include_usage": True},
                    num_retries=0,
                    max_retries=0,
                )
                break
            except lib.InternalServerError:
                if attempt == 2:
                    raise
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})  # fmt: skip
        async for chunk in stream:
            event = b"data: " + chunk.model_dump_json(exclude_none=True).encode() + b"\n\n"
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        body = json.loads(await read(receive))
        try:
            await (raw if mode == "raw" else via_litellm)(body, send)
        except Exception as exc:  # say what broke (uvicorn's bare 500 would not)
            text = f"{mode} proxy: {type(exc).__name__}: {exc}".encode()
            await send({"type": "http.response.start", "status": 502,
                        "headers": [(b"content-type", b"text/plain")]})  # fmt: skip
            await send({"type": "http.response.body", "body": text})

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["raw", "litellm"], required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--model", required=True)
    args = parser.parse_args()
    app = build(args.mode, args.upstream, args.model)
    # The same socket and uvicorn settings as `tanglebrain serve`.
    uvicorn.Server(uvicorn_config(app)).run(sockets=[bind_socket("127.0.0.1", args.port)])


if __name__ == "__main__":
    main()
