"""What every benchmark here shares: a throw-away ``redis-server``, one
measurement per subprocess, and the command line.

Each ``bench_*.py`` script runs on its own (``python bench/bench_client.py``)
and imports this module from its own folder. Nothing here measures anything.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "HOST",
    "ChildFailed",
    "ServerProcess",
    "encode_command",
    "find_redis_server",
    "free_port",
    "redis_server",
    "report_parser",
    "run_json_child",
    "send_command",
    "write_json",
]

HOST = "127.0.0.1"
CHILD_TIMEOUT_S = 600.0
SERVER_START_DEADLINE_S = 10.0


def encode_command(*args: str) -> bytes:
    """RESP-encode a command (array of bulk strings)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def find_redis_server() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    return "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def send_command(port: int, command: bytes, timeout: float = 1.0) -> bytes:
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(command)
        return sock.recv(4096)


class ServerProcess:
    """A throw-away redis-server on a fixed loopback port that can be stopped,
    started again, frozen (SIGSTOP) and thawed — what an outage looks like."""

    def __init__(self, executable: str, port: int | None = None) -> None:
        self.executable = executable
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - lives until close()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.executable, "--port", str(self.port), "--bind", HOST,
             "--save", "", "--appendonly", "no"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + SERVER_START_DEADLINE_S
        while True:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(
                    f"redis-server exited with {self.proc.returncode}:\n"
                    + self.log.read().decode(errors="replace")[-2000:]
                )
            try:
                if send_command(self.port, encode_command("PING")).startswith(b"+PONG"):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"redis-server did not answer PING within {SERVER_START_DEADLINE_S}s"
                )
            time.sleep(0.05)

    def freeze(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGCONT)  # a frozen server cannot act on SIGTERM
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def close(self) -> None:
        self.stop()
        self.log.close()


@contextmanager
def redis_server(executable: str) -> Iterator[int]:
    """Run a throw-away redis-server on a free loopback port; yield the port."""
    server = ServerProcess(executable)
    try:
        server.start()
        yield server.port
    finally:
        server.close()


def run_json_child(cmd: list[str]) -> dict[str, Any]:
    """Run one measurement in a subprocess; its last stdout line is JSON.

    Shared by every bench script: a crash or a hang becomes ChildFailed with
    the child's last error line, never a traceback in the report.
    """
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise ChildFailed(f"timed out after {exc.timeout:.0f}s") from None
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        reason = lines[-1].strip() if lines else f"exit status {proc.returncode}"
        raise ChildFailed(reason, proc.stderr)
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


class ChildFailed(Exception):
    def __init__(self, reason: str, stderr: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.stderr = stderr


def report_parser(doc: str | None, *, quick: str) -> argparse.ArgumentParser:
    """The options every script takes: ``--quick`` (described by ``quick``)
    and ``--json PATH``. Scripts add their own child-mode options."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0] if doc else None)
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    return parser


def write_json(path: str, payload: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwrote {path}")
