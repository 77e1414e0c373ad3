"""Time-free checks of "fails at once": no network connection, no waiting, no model weights loaded.

The team's rule is that no test asserts a time (timings go in benchmarks/). A bound such as
``elapsed < 5`` stood for one of these properties, which are checked here directly:

* :func:`guard_network` / the ``no_network`` fixture: any attempt to reach the network (DNS lookup,
  TCP connect) or to sleep (a retry back-off) in the test's thread is recorded and fails the test
  at once, instead of a missing model retrying the hub for 45 s;
* :func:`refuse_model_loads`: any ``from_pretrained`` of a diffusers or transformers model fails the
  test, so "fails before loading anything" is checked, not guessed from a duration;
* :func:`refuse_imports`: importing a (slow to import) library fails, so "the check comes before the
  library is involved" holds even when an earlier test imported it already.

Use the fixture by importing it into a test module (``from net_guard import no_network``).
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from dataclasses import dataclass, field

import pytest


class NetworkAttempted(AssertionError):
    """What a guarded call raises. An AssertionError, not an OSError: code that handles network
    errors (``except OSError``, the hub client's retries) does not swallow it or retry it."""


@dataclass
class NetGuard:
    """What the code under test tried while guarded."""

    attempts: list[str] = field(default_factory=list)  # connections and DNS lookups
    sleeps: list[float] = field(default_factory=list)  # time.sleep calls in the test's thread

    reported: bool = False  # check() failed once already: the fixture's teardown stays quiet

    def check(self) -> None:
        """Fail when anything was attempted (also when the code caught what the guard raised)."""
        self.reported = bool(self.attempts or self.sleeps)
        assert not self.attempts, f"network access attempted: {self.attempts}"
        assert not self.sleeps, f"time.sleep called {len(self.sleeps)} time(s) (a retry back-off?): {self.sleeps}"


def guard_network(monkeypatch: pytest.MonkeyPatch) -> NetGuard:
    """Make every network connection, DNS lookup and (in this thread) sleep fail and be recorded
    until ``monkeypatch`` is undone. Local (AF_UNIX) sockets are left alone."""
    guard = NetGuard()
    owner = threading.get_ident()
    real_connect, real_connect_ex, real_sleep = socket.socket.connect, socket.socket.connect_ex, time.sleep

    def refuse(what: str, detail: object) -> None:
        guard.attempts.append(f"{what} {detail!r}")
        raise NetworkAttempted(f"network access attempted: {what} {detail!r}")

    def connect(sock: socket.socket, address):
        if sock.family == getattr(socket, "AF_UNIX", None):
            return real_connect(sock, address)
        refuse("connect", address)

    def connect_ex(sock: socket.socket, address):
        if sock.family == getattr(socket, "AF_UNIX", None):
            return real_connect_ex(sock, address)
        refuse("connect_ex", address)

    def create_connection(address, *args, **kwargs):
        refuse("create_connection", address)

    def getaddrinfo(host, port, *args, **kwargs):
        refuse("getaddrinfo", (host, port))

    def sleep(seconds: float) -> None:
        if threading.get_ident() != owner:
            return real_sleep(seconds)
        guard.sleeps.append(seconds)
        raise NetworkAttempted(f"time.sleep({seconds}) called: the code waits (a retry back-off?) instead of failing at once")

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(time, "sleep", sleep)
    return guard


@pytest.fixture
def no_network(monkeypatch):
    """The test fails if the code under test touches the network or sleeps; yields the :class:`NetGuard`."""
    guard = guard_network(monkeypatch)
    yield guard
    if not guard.reported:
        guard.check()


def refuse_model_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make ``from_pretrained`` of every diffusers and transformers model fail the test; return the
    list of what was attempted (empty when nothing was). Imports diffusers and transformers."""
    from diffusers.models.modeling_utils import ModelMixin
    from transformers.modeling_utils import PreTrainedModel

    attempted: list[str] = []

    def refuse(cls, source=None, *args, **kwargs):
        attempted.append(f"{cls.__name__}.from_pretrained({source!r})")
        raise AssertionError(f"a model was loaded: {attempted[-1]}")

    for base in (ModelMixin, PreTrainedModel):
        monkeypatch.setattr(base, "from_pretrained", classmethod(refuse))
    return attempted


def refuse_imports(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """Make ``import name`` (and of its submodules) raise ImportError until ``monkeypatch`` is undone,
    whether or not the module was imported before."""
    for name in names:
        # An imported submodule is found in sys.modules without its package: block those too.
        for loaded in [key for key in sys.modules if key == name or key.startswith(name + ".")] or [name]:
            monkeypatch.setitem(sys.modules, loaded, None)
