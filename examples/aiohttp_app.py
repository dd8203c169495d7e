"""An aiohttp app over a live FlowParser (live capture, needs root).

    sudo python examples/aiohttp_app.py IFACE [--host 127.0.0.1] [--port 8080]

    curl http://127.0.0.1:8080/flows     # the active flows now, as a JSON list of Flow.to_dict()
    curl -N http://127.0.0.1:8080/events # ended flows as server-sent events, one `data: {json}` each

The parser lives as long as the app: the app's cleanup_ctx starts it and stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import AsyncIterator

from aiohttp import web

import aioflow

OPTIONS = web.AppKey("options", dict)
PARSER = web.AppKey("parser", aioflow.FlowParser)


async def capture(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the parser runs in a task of its own, so that its task group (anyio cancel
    scopes) is entered and left in one task, not across this generator's yield."""
    iface, options = app[OPTIONS]["iface"], app[OPTIONS]["parser"]
    opened = asyncio.Event()

    async def run() -> None:
        async with aioflow.FlowParser(iface, **options) as parser:
            app[PARSER] = parser
            opened.set()
            # The first terminated() holds the flows buffered since entry; consuming it here keeps
            # every HTTP client a subscriber like the others and a full buffer from counting drops.
            async for _ in parser.terminated():
                pass

    task = asyncio.create_task(run())
    waiter = asyncio.create_task(opened.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task.done():
        task.result()  # the capture failed to open (no such interface, no permission): fail startup
    yield
    app[PARSER].stop()  # active flows end with reason "stop", then every stream ends
    await task


async def stop_streams(app: web.Application) -> None:
    # on_shutdown comes before aiohttp waits for open handlers: stopping the parser here ends the
    # /events streams at once instead of after the shutdown timeout.
    if PARSER in app:
        app[PARSER].stop()


async def flows(request: web.Request) -> web.Response:
    parser = request.app[PARSER]
    return web.json_response([flow.to_dict() for flow in await parser.snapshot()])


async def events(request: web.Request) -> web.StreamResponse:
    # Subscribe before sending the headers: a client that has the headers misses no flow after them.
    ended = request.app[PARSER].terminated()
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    try:
        async for flow in ended:
            await response.write(f"data: {json.dumps(flow.to_dict())}\n\n".encode())
    finally:
        # unsubscribe now (a client that went away), not when the iterator is garbage collected
        await ended.aclose()  # type: ignore[attr-defined]
    return response


def make_app(iface: str, **parser_options: float) -> web.Application:
    app = web.Application()
    app[OPTIONS] = {"iface": iface, "parser": parser_options}
    app.cleanup_ctx.append(capture)
    app.on_shutdown.append(stop_streams)
    app.router.add_get("/flows", flows)
    app.router.add_get("/events", events)
    return app


if __name__ == "__main__":
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("iface", metavar="IFACE", help="network interface, e.g. eth0")
    cli.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    cli.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    cli.add_argument("--idle-timeout", type=float, default=120.0, help="seconds (default 120)")
    cli.add_argument("--fin-timeout", type=float, default=10.0, help="seconds (default 10)")
    args = cli.parse_args()
    app = make_app(args.iface, idle_timeout=args.idle_timeout, fin_timeout=args.fin_timeout)
    web.run_app(app, host=args.host, port=args.port)
