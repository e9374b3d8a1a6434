"""A helper process fed JSON lines, that the training never waits for.

The training only queues messages (:meth:`Child.send` returns at once); a
thread writes them to the child's stdin and another reads its replies (one
JSON object per line on its stdout). The child's stderr goes to an unnamed
temporary file, so a library's log lines never land in the training's output;
its last line explains a child that died without saying why. The child runs in
a session of its own, so that it can finish its work after the training has
returned (:meth:`Child.close`) without the terminal's hang-up or Ctrl-C; on
POSIX it gets a copy of the training's stderr (its number in
``$IMAGEFIT_NOTIFY_FD``) for the one line that says what went wrong after
that. A caller that reads that stderr from a pipe sees it close when the
child is done, not when the training returns.
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
# Names the child's copy of the parent's stderr (see the module notes).
NOTIFY_FD_ENV = "IMAGEFIT_NOTIFY_FD"


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


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
        env = _env()
        # The child's own stderr is the temporary file: the parent's goes to it under another number.
        notify = os.dup(2) if os.name == "posix" and _is_open(2) else None
        if notify is not None:
            env[NOTIFY_FD_ENV] = str(notify)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", module],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                env=env,
                start_new_session=os.name == "posix",
                pass_fds=() if notify is None else (notify,),
            )
        finally:
            if notify is not None:
                os.close(notify)
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

    def close(self, wait: float = 0.0) -> None:
        """End of input once the queued messages are written (the child sees EOF).

        Args:
            wait: Seconds to wait at most for the queued messages to be in the pipe.
        """
        if not self._closed:
            self._closed = True
            self._queue.put(None)
        if wait > 0:
            self._sender.join(wait)

    def drain(self, timeout: float = 5.0) -> None:
        """Wait for the replies of a child that has exited (its stdout at EOF)."""
        self._reader.join(timeout)

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
