"""Shared helpers for the UI tests: a studio over real services with the labelled stand-in
perception (no model weights), a free port, the example photo."""

from __future__ import annotations

import socket
from pathlib import Path

from storymaker.config import Settings

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "examples" / "photos" / "astronaut.png"

THREE_PANELS = """\
title: Test Flight
style: ink drawing

[{name}] stands beside a rocket at dawn
  caption: The big day.

[{name}] waves from the launch tower
  {name}: "See you soon!"

a rocket climbing into a clear sky
  caption: Lift-off.
"""


def studio_settings(data_dir: Path, backend: str = "draft", **changes) -> Settings:
    """Small, fast settings for tests."""
    values = dict(data_dir=data_dir, backend=backend, width=256, height=256, steps=2,
                  session_max_age_hours=1.0, max_upload_mb=5)
    values.update(changes)
    return Settings.from_env(**values)  # the isolated folders conftest sets, plus these


def make_services(data_dir: Path, backend: str = "draft", **changes):
    """Real services (registry, poses, storage, engine) with the stand-in perception."""
    from storymaker.services.container import build_services, tiny_perception

    settings = studio_settings(data_dir, backend, **changes)
    return build_services(settings, backend=backend, perception=tiny_perception())


def make_context(data_dir: Path, backend: str = "draft", *, max_age_hours: float | None = None, **changes):
    """What the studio's handlers get (services, settings, sessions) over :func:`make_services`;
    ``max_age_hours`` (0: sessions never expire) replaces the settings' session age."""
    from storymaker.ui.context import StudioContext
    from storymaker.ui.session import SessionManager

    services = make_services(data_dir, backend, **changes)
    settings = services.settings
    age = settings.session_max_age_hours if max_age_hours is None else max_age_hours
    return StudioContext(services, settings, SessionManager(settings.sessions_dir, age))


def make_studio(data_dir: Path, backend: str = "draft", **changes):
    from storymaker.ui import build_app

    return build_app(make_services(data_dir, backend, **changes))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(studio) -> str:
    """Launch in-process on a free port; returns the local URL."""
    _, url, _ = studio.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                              quiet=True)
    return url
