"""A helper process fed JSON lines, that the training never waits for until the end.

The training only queues messages (:meth:`Child.send` returns at once); a
thread writes them to the child's stdin and another reads its replies (one
JSON object per line on its stdout). The child's stderr goes to an unnamed
temporary file, so a library's log lines never land in the training's output;
its last line explains a child that died without saying why.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Reply = dict[str, Any]


def _env() -> dict[str, str]:
    """This environment, with imagefit's folder on PYTHONPATH when it is a source checkout (not site-packages)."""
    import site

    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    if root not in {*site.getsitepackages(), site.getusersitepackages()}:
        env["PYTHONPATH"] = os.pathsep.join([root, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    return env


class Child:
    """``python -m <module>``, its stdin fed from a queue, its replies collected.

    Args:
        module: The module to run.
        on_reply: Called (in the reader thread) with each reply as it comes.
    """

    def __init__(self, module: str, on_reply: Callable[[Reply], None] | None = None):
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=_env(),
        )
        self.replies: list[Reply] = []
        self._closed = False
        self._on_reply = on_reply
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._sender = threading.Thread(target=self._send_loop, name=f"{module}-send", daemon=True)
        self._reader = threading.Thread(target=self._read_loop, name=f"{module}-read", daemon=True)
        self._sender.start()
        self._reader.start()

    def send(self, message: dict[str, Any]) -> None:
        """Queue one message (never blocks; a child that is gone simply gets no more)."""
        if not self._closed:
            self._queue.put(json.dumps(message).encode() + b"\n")

    def close(self) -> None:
        """End of input once the queued messages are written (the child sees EOF)."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)

    def _send_loop(self) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        try:
            while (item := self._queue.get()) is not None:
                stdin.write(item)
                stdin.flush()
        except (OSError, ValueError):
            pass  # the child is gone: its reply or its stderr says why
        finally:
            try:
                stdin.close()
            except OSError:
                pass

    def _read_loop(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        for line in stdout:
            try:
                reply = json.loads(line)
            except ValueError:
                continue
            if isinstance(reply, dict):
                self.replies.append(reply)
                if self._on_reply is not None:
                    self._on_reply(reply)

    def finish(self, timeout: float) -> bool:
        """Close the input and wait up to ``timeout`` seconds; past it the child is killed and False returned."""
        self.close()
        deadline = time.monotonic() + timeout
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return False
        finally:
            # Its stdout is at EOF once it has exited: the last replies are read in a moment.
            self._reader.join(max(1.0, deadline - time.monotonic()))
        return True

    def stderr_tail(self) -> str:
        """The last non-empty line the child wrote to stderr ("" if none)."""
        try:
            self._stderr.seek(0, os.SEEK_END)
            size = self._stderr.tell()
            self._stderr.seek(max(0, size - 4096))
            lines = [ln.strip() for ln in self._stderr.read().decode("utf-8", "replace").splitlines() if ln.strip()]
        except OSError:
            return ""
        return lines[-1] if lines else ""
