"""One home for every public exception, each naming the root it is imported from."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import beignet_redis_anyio
from beignet_redis_anyio import _exceptions


def _all_modules() -> list[str]:
    return [
        info.name
        for info in pkgutil.walk_packages(beignet_redis_anyio.__path__, "beignet_redis_anyio.")
    ]


def test_every_public_exception_lives_in_one_module_and_says_root() -> None:
    public = {
        name: obj
        for name, obj in vars(_exceptions).items()
        if inspect.isclass(obj) and issubclass(obj, BaseException) and not name.startswith("_")
        and obj.__module__ == "beignet_redis_anyio"
    }  # fmt: skip
    assert set(public) == set(_exceptions.__all__)
    for name, cls in public.items():
        assert getattr(beignet_redis_anyio, name) is cls, f"{name} is not exported from the root"
        assert name in beignet_redis_anyio.__all__


def test_no_other_module_defines_a_public_exception() -> None:
    strays = []
    for name in _all_modules():
        module = importlib.import_module(name)
        for attr, obj in vars(module).items():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and not attr.startswith("_")
                and inspect.getmodule(obj) is module
                and module is not _exceptions
            ):
                strays.append(f"{name}.{attr}")
    assert strays == []


def test_the_root_s_exceptions_are_all_from_the_exceptions_module() -> None:
    for name in beignet_redis_anyio.__all__:
        obj = getattr(beignet_redis_anyio, name)
        if inspect.isclass(obj) and issubclass(obj, BaseException):
            assert getattr(_exceptions, name, None) is obj, name
            assert obj.__module__ == "beignet_redis_anyio", name


def test_testing_servers_still_offers_server_not_found() -> None:
    from beignet_redis_anyio.testing import servers

    assert servers.ServerNotFound is beignet_redis_anyio.ServerNotFound
