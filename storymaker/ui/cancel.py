"""Cancel flags of renders, one per project a browser tab shows, kept in small files so that every
process sees them: on ZeroGPU the render runs in a forked worker process, the Cancel button in
the app's.

**Cancel stops every render of the project that was clicked before it**: the one running and those
waiting behind it in the queue (a Cancel used to stop only the running one, and the next waiting
one then started). A render button's click *arms* (:meth:`CancelFlags.arm`, outside the queue) and
gets a ticket: the project's count of Cancels at that moment. The render takes its flag with that
ticket when it leaves the queue (:meth:`CancelFlags.fresh`). A Cancel adds one to the count, so
every ticket from before it reads as cancelled, and a render clicked after it does not.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path


def _read(path: Path) -> dict:
    """The flag file's ``{"cancels": n, "waiting": n}`` (zeros when absent or unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {"cancels": int(data.get("cancels", 0)), "waiting": max(0, int(data.get("waiting", 0)))}
    except (OSError, ValueError, TypeError, AttributeError):
        return {"cancels": 0, "waiting": 0}


def _write(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    tmp.write_text(json.dumps(state), encoding="utf-8")
    os.replace(tmp, path)


class CancelEvent:
    """The ``threading.Event``-like flag of one render (``is_set``: a Cancel came after its click)."""

    def __init__(self, path: Path, ticket: int):
        self.path = path
        self.ticket = ticket

    def is_set(self) -> bool:
        return _read(self.path)["cancels"] > self.ticket

    def set(self) -> None:
        """Cancel this render (and every other of its project clicked before now)."""
        state = _read(self.path)
        _write(self.path, {"cancels": max(state["cancels"], self.ticket) + 1, "waiting": 0})


@dataclass(frozen=True)
class CancelFlags:
    """The cancel flags of the app (not a module global), in ``<root>/<session id>/.cancel-<project>``
    (root: the sessions folder, so a flag goes with its session)."""

    root: Path | None = None  # default: a private temporary folder
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _tmp: dict = field(default_factory=dict)

    def _path(self, sid: str) -> Path:
        root = self.root
        if root is None:
            with self._lock:
                if "root" not in self._tmp:
                    self._tmp["root"] = Path(tempfile.mkdtemp(prefix="storymaker-cancel-"))
                root = self._tmp["root"]
        # One flag per project a tab shows (``<id>/<project>``): a render of another project, in
        # another tab of the same browser, neither takes nor cancels this one.
        session, _, project = str(sid).partition("/")
        safe = re.sub(r"[^A-Za-z0-9_-]", "_", session)[:128] or "_"
        name = ".cancel-" + re.sub(r"[^A-Za-z0-9_-]", "_", project)[:64] if project else ".cancel"
        return Path(root) / safe / name  # in the session's folder: removed with it

    def arm(self, sid: str) -> str:
        """At a render button's click: the render's ticket (give it to :meth:`fresh`). An expired
        session's folder is not brought back (the render then says the session expired)."""
        path = self._path(sid)
        with self._lock:
            state = _read(path)
            if self.root is None or path.parent.is_dir():
                _write(path, {**state, "waiting": state["waiting"] + 1})
        return str(state["cancels"])

    def fresh(self, sid: str, ticket: str | None = None) -> CancelEvent:
        """The flag of the render of ``sid`` that starts now: with its click's ``ticket`` it is set
        already when Cancel was pressed while it waited; without one (a call that was not armed)
        it is clear, and the next Cancel sets it."""
        path = self._path(sid)
        with self._lock:
            state = _read(path)
            try:
                number = int(ticket) if ticket not in (None, "") else None
            except ValueError:
                number = None
            if number is not None and state["waiting"]:
                _write(path, {**state, "waiting": state["waiting"] - 1})
            return CancelEvent(path, state["cancels"] if number is None else number)

    def cancel(self, sid: str) -> bool:
        """Stop every render of ``sid`` clicked before now, running or waiting; False if none is
        known to run or wait."""
        path, running = self._path(sid), self.is_busy(sid)  # (_path takes the lock itself)
        with self._lock:
            state = _read(path)
            known = state["waiting"] > 0 or running
            if known or path.exists():
                _write(path, {"cancels": state["cancels"] + 1, "waiting": 0})
            return known

    @contextlib.contextmanager
    def busy(self, sid: str):
        """Mark the render of ``sid`` as running while the block runs (:meth:`is_busy` sees it from
        any process, e.g. after a page reload): a small file beside the flag holding this
        process's id, removed at the end."""
        marker = self._busy_path(sid)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(os.getpid()), encoding="utf-8")
        try:
            yield
        finally:
            marker.unlink(missing_ok=True)

    def is_busy(self, sid: str) -> bool:
        """Whether a render of ``sid`` is running now (a marker of :meth:`busy` whose process is
        alive: one left by a process that died does not count)."""
        try:
            pid = int(self._busy_path(sid).read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            return False
        if pid == os.getpid() or os.name == "nt":  # on Windows os.kill would end the process
            return True
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # alive, another user's
        return True

    def _busy_path(self, sid: str) -> Path:
        path = self._path(sid)
        return path.with_name(path.name + ".running")


__all__ = ["CancelEvent", "CancelFlags"]
