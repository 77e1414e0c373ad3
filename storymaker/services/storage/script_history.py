"""Earlier texts of a project's script, so that no edit is lost to another tab or a replacement.

A text is kept (``script-history/<time>.txt``) when a save would otherwise make it disappear
without anyone having seen it: another tab or window saved it after this editor last read the
script (:meth:`ScriptHistory.write_script` with ``base``), or the user replaces the script (restore
an earlier text, insert the example). The newest :data:`KEEP` texts are kept.
"""

from __future__ import annotations

import datetime as _dt
import logging
from dataclasses import dataclass
from pathlib import Path

from ...errors import ProjectError
from ...fsutil import atomic_write_text
from .folder import ProjectFolder

log = logging.getLogger(__name__)

HISTORY_DIR = "script-history"
KEEP = 30


def same_text(a: str, b: str) -> bool:
    """Whether two texts of the script differ only in what the browser's editor changes by itself
    when it shows a text (its line ends, whitespace at the end): no one's edit."""
    def plain(text: str) -> str:
        return text.replace("\r\n", "\n").replace("\r", "\n").rstrip()

    return plain(a) == plain(b)


@dataclass(frozen=True)
class ScriptVersion:
    """One kept text of the script; ``id`` is its file name's stem (its time, sortable)."""

    id: str
    text: str

    @property
    def saved(self) -> str:
        """When it was kept, ``YYYY-MM-DD HH:MM:SS`` (UTC)."""
        stamp = self.id.partition("-")[0]
        return f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]} {stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}"

    def label(self) -> str:
        """A line for a menu: the time, the title or first line, the size."""
        lines = [line.strip() for line in self.text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        first = next((line.partition(":")[2].strip() for line in lines if line.lower().startswith("title:")),
                     lines[0] if lines else "(empty)")
        return f"{self.saved} UTC · {first[:48]} · {len(self.text.splitlines())} lines"


class ScriptHistory(ProjectFolder):
    """The script of a project folder and its kept earlier texts."""

    @property
    def history_dir(self) -> Path:
        return self.path / HISTORY_DIR

    def read_script(self) -> str:
        """The script text ('' for a new project)."""
        try:
            return self.script_path.read_bytes().decode("utf-8")  # verbatim: keep the user's line ends
        except FileNotFoundError:
            return ""
        except (OSError, UnicodeDecodeError) as err:
            raise ProjectError(f"Cannot read {self.script_path}: {err}") from None

    def write_script(self, text: str, *, base: str | None = None) -> ScriptVersion | None:
        """Save the script (atomically); any text, valid or not, is kept. A script that parses also
        updates which panel is which (``panel_ids``), so edits are followed as they are made.

        ``base``: the text the writer last read or saved (an editor's). If the saved script is now
        neither ``base`` nor ``text``, someone else changed it in between (another tab or window):
        that text is kept in the history first, and returned; else None. With a ``base``, texts are
        compared as :func:`same_text` (the editor drops the last line end of a text it shows), and a
        text the same as the saved one is not written again.
        """
        text = str(text)
        kept = None
        with self._locked():
            if base is not None:
                current = self.read_script()
                if same_text(current, text):
                    return None  # what the editor shows of the saved text: the file stays verbatim
                if not same_text(current, base):
                    kept = self._keep(current)
            atomic_write_text(self.script_path, text)
        self._sync_script(text)
        return kept

    def keep_script(self) -> ScriptVersion | None:
        """Keep the script's current text in the history (before it is replaced on purpose)."""
        with self._locked():
            return self._keep(self.read_script())

    def script_history(self) -> list[ScriptVersion]:
        """The kept texts, newest first."""
        if not self.history_dir.is_dir():
            return []
        out = []
        for path in sorted(self.history_dir.glob("*.txt"), reverse=True):
            try:
                out.append(ScriptVersion(path.stem, path.read_bytes().decode("utf-8")))
            except (OSError, UnicodeDecodeError) as err:
                log.warning("skipping unreadable kept script %s: %s", path, err)
        return out

    def restore_script(self, version_id: str) -> ScriptVersion | None:
        """Make a kept text the script again; the text it replaces is kept first (returned)."""
        chosen = next((v for v in self.script_history() if v.id == version_id), None)
        if chosen is None:
            raise ProjectError("That earlier script is not kept any more: choose one in the list.")
        with self._locked():
            kept = self._keep(self.read_script())
            atomic_write_text(self.script_path, chosen.text)
        self._sync_script(chosen.text)
        return kept

    def _keep(self, text: str) -> ScriptVersion | None:
        """Write ``text`` to the history (the caller holds the lock); nothing for an empty text or
        one equal to the newest kept. The oldest beyond :data:`KEEP` go."""
        if not text.strip():
            return None
        history = self.script_history()
        if history and history[0].text == text:
            return history[0]
        now = _dt.datetime.now(_dt.timezone.utc)
        version = ScriptVersion(now.strftime("%Y%m%dT%H%M%S-%f"), text)
        self.history_dir.mkdir(exist_ok=True)
        atomic_write_text(self.history_dir / f"{version.id}.txt", text)
        for old in ([version, *history])[KEEP:]:
            (self.history_dir / f"{old.id}.txt").unlink(missing_ok=True)
        log.info("kept an earlier script of %s (%s)", self.path, version.id)
        return version

    def _sync_script(self, text: str) -> None:
        """Hook after each save: the project's panel matching (:class:`.versions.PanelVersions`)."""


__all__ = ["HISTORY_DIR", "KEEP", "ScriptHistory", "ScriptVersion", "same_text"]
