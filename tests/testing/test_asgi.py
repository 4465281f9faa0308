"""RunningApp.request: what the app sees of a path, a query, a JSON body."""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from typing import Any

import pytest

from beignet_redis_anyio.testing.asgi import run_asgi_lifespan

pytestmark = pytest.mark.anyio


async def echo(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
    """Answers every request with what it saw of it, as JSON."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    request = await receive()
    seen = {
        "method": scope["method"],
        "path": scope["path"],
        "raw_path": scope["raw_path"].decode(),
        "query": scope["query_string"].decode(),
        "headers": {k.decode(): v.decode() for k, v in scope["headers"]},
        "body": request["body"].decode(),
    }
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": json.dumps(seen).encode()})


async def test_a_query_in_the_path_is_the_query_string() -> None:
    async with run_asgi_lifespan(echo) as app:
        seen = (await app.request("GET", "/items?page=2&sort=name")).json()
    assert seen["path"] == "/items" and seen["query"] == "page=2&sort=name"


async def test_params_are_encoded_and_added_to_a_query_in_the_path() -> None:
    async with run_asgi_lifespan(echo) as app:
        seen = (await app.request("GET", "/items?page=2", params={"q": "a b&c"})).json()
        repeated = (await app.request("GET", "/items", params=[("tag", 1), ("tag", 2)])).json()
    assert seen["query"] == "page=2&q=a+b%26c"
    assert repeated["query"] == "tag=1&tag=2"


async def test_json_sends_an_encoded_body_with_its_content_type() -> None:
    async with run_asgi_lifespan(echo) as app:
        seen = (await app.request("PUT", "/items/7", json={"price": "9.90"})).json()
        null = (await app.request("PUT", "/items/7", json=None)).json()
        own = (
            await app.request(
                "PUT", "/items/7", json=[1], headers=[(b"content-type", b"application/x+json")]
            )
        ).json()
    assert json.loads(seen["body"]) == {"price": "9.90"}
    assert seen["headers"]["content-type"] == "application/json"
    assert null["body"] == "null"  # None is a JSON value, not "no body"
    assert own["headers"]["content-type"] == "application/x+json"


async def test_a_percent_encoded_path_reaches_the_app_decoded() -> None:
    async with run_asgi_lifespan(echo) as app:
        seen = (await app.request("GET", "/users/a%20b")).json()
    assert seen["path"] == "/users/a b" and seen["raw_path"] == "/users/a%20b"


async def test_non_ascii_is_sent_percent_encoded_as_a_client_would() -> None:
    async with run_asgi_lifespan(echo) as app:
        seen = (await app.request("GET", "/caf\u00e9?q=cr\u00e8me&x=%41")).json()
    assert seen["raw_path"] == "/caf%C3%A9" and seen["path"] == "/caf\u00e9"
    assert seen["query"] == "q=cr%C3%A8me&x=%41"  # an escape already made is kept


async def test_a_request_that_says_two_things_at_once_is_refused() -> None:
    async with run_asgi_lifespan(echo) as app:
        with pytest.raises(ValueError, match="json= and body="):
            await app.request("POST", "/", json={}, body=b"x")
        with pytest.raises(ValueError, match="query_string="):
            await app.request("GET", "/?a=1", query_string=b"b=2")
        with pytest.raises(ValueError, match="query_string="):
            await app.request("GET", "/", params={"a": 1}, query_string=b"b=2")
        with pytest.raises(ValueError, match="must start with '/'"):
            await app.request("GET", "?page=2")
        with pytest.raises(ValueError, match="cannot be None"):
            await app.request("GET", "/", params={"page": None})
        raw = (await app.request("GET", "/", query_string=b"a=%ZZ")).json()
    assert raw["query"] == "a=%ZZ"  # raw bytes, as given
