"""Run an ASGI app's real lifespan in a test, and send it requests.

A web app opens its cache provider in its lifespan (see
``examples/web_lifespan.py``). A test that builds the port by hand tests
something else; this runs the app's own startup and shutdown through the
ASGI lifespan protocol, with no server and no HTTP client to install::

    async with run_asgi_lifespan(app) as running:
        response = await running.request("GET", "/users/7")
        assert response.status == 200 and response.json() == {...}
        cache = running.state["cache"]  # what the lifespan yielded

The lifespan task runs in a task group of this block. Startup and shutdown
are each bounded by ``step_seconds``, and a lifespan that fails raises
``RuntimeError`` naming what the app said. Leaving the block — normally, by
an exception or by cancellation — sends the shutdown, so the provider
closes; shutdown is shielded, so a cancelled test still closes its
connections.
"""

from __future__ import annotations

import json as _json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote, unquote, urlencode

import anyio
import attrs

from .._net.task_group import background_task_group

__all__ = ["AsgiResponse", "RunningApp", "run_asgi_lifespan"]

Message = MutableMapping[str, Any]
#: What ``quote`` leaves alone in a path and in a query: their own delimiters
#: and escapes already made.
_PATH_SAFE = "/%:@!$&'()*+,;=~"
_QUERY_SAFE = _PATH_SAFE + "?"
#: ``json=`` not given (``None`` is a JSON value: ``null``).
_NO_JSON: Any = object()
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]


@attrs.frozen
class AsgiResponse:
    """What the app sent back for one request."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def json(self) -> Any:
        """The body, decoded as JSON."""
        return _json.loads(self.body)


class RunningApp:
    """An app whose lifespan has started: its ``state``, and ``request``."""

    def __init__(self, app: AsgiApp, state: dict[str, Any]) -> None:
        self.app = app
        #: The lifespan state: what the app's lifespan yielded (Starlette,
        #: FastAPI) or stored in ``scope["state"]``.
        self.state = state

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
        json: Any = _NO_JSON,
        body: bytes = b"",
        headers: list[tuple[bytes, bytes]] | None = None,
        query_string: bytes = b"",
    ) -> AsgiResponse:
        """One HTTP request straight into the app, as a server would send it.

        ``path`` may carry a query (``"/items?page=2"``); ``params`` adds to it,
        URL-encoded (a sequence of pairs repeats a name). ``json=`` sends that
        value JSON-encoded with ``content-type: application/json``; ``body``
        sends raw bytes instead. ``query_string`` is the raw, already-encoded
        query, for when the app must see exact bytes; it cannot be combined
        with a query in ``path`` or with ``params``.

        Raises ``ValueError`` for a request that says two things at once
        (``json=`` and ``body=``, ``query_string=`` and another query).
        Cancellation: the app's request handler is cancelled with the caller.
        """
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/', got {path!r}")
        path, _, in_path = path.partition("?")
        # As a client sends them: non-ASCII percent-encoded as UTF-8, and
        # escapes already in place kept.
        raw_path = quote(path, safe=_PATH_SAFE).encode("ascii")
        query = quote(in_path, safe=_QUERY_SAFE).encode("ascii")
        if params is not None:
            pairs = list(params.items()) if isinstance(params, Mapping) else list(params)
            if any(value is None for _, value in pairs):
                raise ValueError("params= values cannot be None: leave the name out instead")
            encoded = urlencode(pairs).encode("ascii")
            query = query + b"&" + encoded if query else encoded
        if query_string:
            if query:
                raise ValueError("query_string= cannot be combined with a query in path or params=")
            query = query_string
        headers = list(headers or [])
        if json is not _NO_JSON:
            if body:
                raise ValueError("json= and body= both give the request's body: pass one")
            body = _json.dumps(json).encode()
            if not any(name.lower() == b"content-type" for name, _ in headers):
                headers.append((b"content-type", b"application/json"))
        sent: list[Message] = []
        request_sent = False

        async def receive() -> Message:
            nonlocal request_sent
            if not request_sent:
                request_sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await anyio.sleep_forever()  # the client never disconnects meanwhile
            raise AssertionError("unreachable")

        async def send(message: Message) -> None:
            sent.append(message)

        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": method, "scheme": "http", "path": unquote(raw_path.decode("ascii")),
            "raw_path": raw_path, "query_string": query, "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
            # Each request gets a shallow copy, as ASGI servers give it.
            "state": dict(self.state),
        }  # fmt: skip
        await self.app(scope, receive, send)
        start = next(m for m in sent if m["type"] == "http.response.start")
        chunks = [m.get("body", b"") for m in sent if m["type"] == "http.response.body"]
        return AsgiResponse(start["status"], list(start.get("headers", [])), b"".join(chunks))


@asynccontextmanager
async def run_asgi_lifespan(
    app: AsgiApp, *, step_seconds: float = 10.0
) -> AsyncIterator[RunningApp]:
    """Start ``app``'s lifespan, yield it running, shut it down on exit.

    Raises ``RuntimeError`` with the app's own message when its startup or
    shutdown fails or never answers, and ``TimeoutError`` when a step takes
    longer than ``step_seconds``. Cancellation: leaving the block — also by
    cancellation — sends the shutdown, shielded and bounded by
    ``step_seconds``, so the app's provider closes its connections.
    """
    state: dict[str, Any] = {}
    to_app, app_inbox = anyio.create_memory_object_stream[Message](2)
    app_outbox, from_app = anyio.create_memory_object_stream[Message](2)
    crashed: list[BaseException] = []
    # Shielded: a cancelled test must still reach the shutdown below, so the
    # app's lifespan outlives the test's cancellation until then.
    app_scope = anyio.CancelScope(shield=True)

    async def lifespan() -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
        scope["state"] = state
        try:
            with app_scope:
                async with app_outbox:
                    await app(scope, app_inbox.receive, app_outbox.send)
        except Exception as exc:  # told to the test below, as the app's failure
            crashed.append(exc)

    async def step(message: str, expected: str) -> None:
        await to_app.send({"type": message})
        try:
            reply = await from_app.receive()
        except anyio.EndOfStream:
            cause = crashed[0] if crashed else None
            raise RuntimeError(
                f"the app's lifespan ended during {message} without answering "
                f"(does it support the lifespan protocol?): {cause!r}"
            ) from cause
        if reply["type"] != expected:
            raise RuntimeError(f"{message} failed: {reply.get('message', reply['type'])}")

    async with to_app, from_app, background_task_group() as tasks:
        tasks.start_soon(lifespan, name="asgi lifespan")
        with anyio.fail_after(step_seconds):
            await step("lifespan.startup", "lifespan.startup.complete")
        try:
            yield RunningApp(app, state)
        finally:
            try:
                with anyio.CancelScope(shield=True), anyio.fail_after(step_seconds):
                    await step("lifespan.shutdown", "lifespan.shutdown.complete")
            finally:
                app_scope.cancel()  # an app that never returns is not waited for
