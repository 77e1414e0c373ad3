"""The pose library: built-in presets (``assets/poses``) plus a project's saved poses.

A project's poses live in ``<project>/poses/<name>.json`` (written atomically). Names are kebab-case
and unique across both sources: a project pose may not take a preset's name, so a name in a story
script always means the same skeleton. Presets are read once and cached; project poses are read
from disk on each call (they are small), so several sessions see each other's changes.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from ..domain.poses import (
    Pose,
    load_pose,
    mirror_pose,
    order_left_to_right,
    reorder_people,
    save_pose,
    validate_name,
    validate_pose,
)
from ..errors import PoseError

log = logging.getLogger(__name__)

#: Where the built-in presets ship (``<repo>/assets/poses``); ``STORYMAKER_POSE_PRESETS`` overrides.
DEFAULT_PRESETS_DIR = Path(__file__).resolve().parents[2] / "assets" / "poses"


def default_presets_dir() -> Path:
    override = os.environ.get("STORYMAKER_POSE_PRESETS", "").strip()
    return Path(override).expanduser() if override else DEFAULT_PRESETS_DIR


@dataclass(frozen=True)
class PoseInfo:
    """A library entry, for listings: no keypoints."""

    name: str
    num_people: int
    source: str  # "preset" or "project"
    description: str = ""
    preview: Path | None = None  # a preview PNG if one ships beside the JSON


class PoseLibrary:
    """Built-in presets plus (optionally) one project's ``poses/`` folder."""

    def __init__(self, poses_dir: str | os.PathLike | None = None, *, presets_dir: str | os.PathLike | None = None):
        self.poses_dir = Path(poses_dir) if poses_dir is not None else None
        self.presets_dir = Path(presets_dir) if presets_dir is not None else default_presets_dir()
        self._presets: dict[str, Pose] | None = None
        self._lock = threading.Lock()

    @classmethod
    def for_project(cls, project_dir: str | os.PathLike, **kwargs) -> "PoseLibrary":
        """The library of the project folder ``project_dir`` (its poses in ``<project>/poses``)."""
        return cls(Path(project_dir) / "poses", **kwargs)

    # -- reading --------------------------------------------------------------------------------
    def presets(self) -> dict[str, Pose]:
        """Every built-in preset by name (loaded once). A broken preset file is an error."""
        with self._lock:
            if self._presets is None:
                if not self.presets_dir.is_dir():
                    raise PoseError(
                        f"The pose presets folder {self.presets_dir} is missing; reinstall StoryMaker "
                        "or set STORYMAKER_POSE_PRESETS to a folder of pose JSON files."
                    )
                loaded = [load_pose(path, source="preset") for path in self.presets_dir.glob("*.json")]
                loaded.sort(key=lambda pose: (pose.num_people, pose.name))
                self._presets = {pose.name: pose for pose in loaded}
            return dict(self._presets)

    def project_poses(self) -> dict[str, Pose]:
        """The project's saved poses by name; a broken file is skipped with a warning."""
        if self.poses_dir is None or not self.poses_dir.is_dir():
            return {}
        found = {}
        for path in sorted(self.poses_dir.glob("*.json")):
            try:
                pose = load_pose(path, source="project")
            except PoseError as err:
                log.warning("Skipping unreadable project pose %s: %s", path, err)
                continue
            found[pose.name] = pose
        return found

    def list(self) -> list[PoseInfo]:
        """Presets first (by number of people, then name), then the project's poses."""
        infos = []
        for pose in self.presets().values():
            png = self.presets_dir / f"{pose.name}.png"
            infos.append(PoseInfo(pose.name, pose.num_people, "preset", pose.description, png if png.is_file() else None))
        presets = self.presets()
        for pose in self.project_poses().values():
            if pose.name not in presets:
                infos.append(PoseInfo(pose.name, pose.num_people, "project", pose.description))
        return infos

    def names(self, num_people: int | None = None) -> list[str]:
        """Names of every pose, optionally only those with ``num_people`` people."""
        return [i.name for i in self.list() if num_people is None or i.num_people == num_people]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def get(self, name: str) -> Pose:
        """The pose called ``name`` (a preset or a project pose); :class:`PoseError` if unknown."""
        key = str(name).strip().lower()
        presets = self.presets()
        if key in presets:
            return presets[key]
        if self.poses_dir is not None:
            path = self.poses_dir / f"{key}.json"
            if _is_safe_name(key) and path.is_file():
                return load_pose(path, source="project")
        known = self.names()
        close = _close_matches(key, known)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise PoseError(
            f"Unknown pose {name!r}.{hint} Run 'python -m storymaker poses list' to see the "
            f"{len(known)} available poses."
        )

    # -- writing --------------------------------------------------------------------------------
    def save(self, pose: Pose, *, overwrite: bool = False) -> Path:
        """Save ``pose`` in the project's ``poses/`` folder (validated, atomic); returns the file."""
        if self.poses_dir is None:
            raise PoseError("This pose library has no project: open a project to save poses in it.")
        validate_name(pose.name)
        if pose.name in self.presets():
            raise PoseError(
                f"{pose.name!r} is the name of a built-in pose; choose another name for your pose."
            )
        checked = replace(validate_pose(pose), source="project")
        path = self.poses_dir / f"{checked.name}.json"
        if path.exists() and not overwrite:
            raise PoseError(
                f"The project already has a pose called {checked.name!r}; choose another name or "
                "allow overwriting it."
            )
        save_pose(checked, path)
        log.info("Saved pose %s (%d people) to %s", checked.name, checked.num_people, path)
        return path

    def delete(self, name: str) -> None:
        """Remove a project pose (presets cannot be deleted)."""
        if name in self.presets():
            raise PoseError(f"{name!r} is a built-in pose and cannot be deleted.")
        if self.poses_dir is None or not _is_safe_name(name) or not (self.poses_dir / f"{name}.json").is_file():
            raise PoseError(f"The project has no pose called {name!r}.")
        (self.poses_dir / f"{name}.json").unlink()

    def derive(
        self,
        name: str,
        new_name: str,
        *,
        mirror: bool = False,
        order: Sequence[int] | None = None,
        left_to_right: bool = False,
        overwrite: bool = False,
    ) -> Pose:
        """Save a variant of pose ``name`` as ``new_name``: mirrored and/or with people reordered."""
        pose = self.get(name)
        if mirror:
            pose = mirror_pose(pose)
        if left_to_right:
            pose = order_left_to_right(pose)
        if order is not None:
            pose = reorder_people(pose, order)
        pose = replace(pose, name=validate_name(new_name), source="project")
        self.save(pose, overwrite=overwrite)
        return pose

    def import_file(
        self, path: str | os.PathLike, name: str | None = None, *, left_to_right: bool = False,
        overwrite: bool = False,
    ) -> Pose:
        """Save a pose JSON file (this app's format, or OpenPose's ``pose_keypoints_2d`` JSON as pose
        editors write it) in the project, under ``name`` (default: the file's own name)."""
        pose = load_pose(path, source="project")
        if name is not None:
            pose = replace(pose, name=validate_name(name))
        if left_to_right:
            pose = order_left_to_right(pose)
        self.save(pose, overwrite=overwrite)
        return pose

    def extract(
        self,
        photo: Any,
        name: str,
        estimator: Any,
        *,
        description: str = "",
        overwrite: bool = False,
    ) -> Pose:
        """Find the people in ``photo`` (left to right) with ``estimator`` and save them as ``name``."""
        from ..perception.pose import extract_pose

        validate_name(name)
        if self.poses_dir is None:
            raise PoseError("This pose library has no project: open a project to save poses in it.")
        if name in self.presets():
            raise PoseError(f"{name!r} is the name of a built-in pose; choose another name for your pose.")
        if not overwrite and (self.poses_dir / f"{name}.json").exists():
            raise PoseError(
                f"The project already has a pose called {name!r}; choose another name or allow "
                "overwriting it."
            )
        pose = extract_pose(photo, name, estimator, description=description)
        if pose.num_people == 0:
            raise PoseError(
                "No person was found in the photo, so there is no pose to save. Use a photo where "
                "each person's whole body (or at least head, shoulders and hips) is visible."
            )
        self.save(pose, overwrite=overwrite)
        return pose

    def preview(self, name: str, width: int, height: int):
        """The pose drawn as the ControlNet sees it, at ``width`` x ``height`` (PIL RGB)."""
        from ..perception.pose import render_pose

        return render_pose(self.get(name), width, height)


def _is_safe_name(name: str) -> bool:
    try:
        validate_name(name)
    except PoseError:
        return False
    return True


def _close_matches(name: str, known: list[str]) -> list[str]:
    import difflib

    return difflib.get_close_matches(name, known, n=3, cutoff=0.6)
