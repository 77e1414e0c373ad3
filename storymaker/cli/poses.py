"""`python -m storymaker poses ...`: list, show, extract; derive (mirror/reorder), import, delete.

    python -m storymaker poses list [--project DIR] [--people N]
    python -m storymaker poses show NAME --out PNG [--size WxH] [--project DIR]
    python -m storymaker poses extract PHOTO NAME --project DIR [--overwrite]
    python -m storymaker poses derive NAME NEW_NAME --project DIR [--mirror] [--order 1,0]
    python -m storymaker poses import FILE.json [NAME] --project DIR
    python -m storymaker poses delete NAME --project DIR
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from ..config import Settings
from ..errors import InvalidInputError, ProjectError


def register(subparsers) -> None:
    parser = subparsers.add_parser("poses", help="list, preview and extract poses")
    sub = parser.add_subparsers(dest="poses_command", metavar="ACTION")
    sub.required = True

    p = sub.add_parser("list", help="list built-in and project poses")
    p.add_argument("--project", type=Path, help="project folder whose saved poses to include")
    p.add_argument("--people", type=int, help="only poses with this many people")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", help="draw a pose as the ControlNet sees it")
    p.add_argument("name")
    p.add_argument("--out", type=Path, required=True, help="PNG file to write")
    p.add_argument("--size", help="WxH in pixels (default: the pose's own frame)")
    p.add_argument("--project", type=Path, help="project folder (for its saved poses)")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("extract", help="find the people in a photo and save their pose in a project")
    p.add_argument("photo", type=Path)
    p.add_argument("name", help="kebab-case name for the new pose")
    p.add_argument("--project", type=Path, required=True, help="project folder to save the pose in")
    p.add_argument("--description", default="", help="a note stored with the pose")
    p.add_argument("--overwrite", action="store_true", help="replace a project pose of that name")
    p.add_argument("--detect-resolution", type=int, default=512, help="detector input size (default 512)")
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("import", help="save a pose JSON file (this app's or OpenPose's format) in a project")
    p.add_argument("file", type=Path)
    p.add_argument("name", nargs="?", help="kebab-case name (default: the name in the file)")
    p.add_argument("--project", type=Path, required=True)
    p.add_argument("--left-to-right", action="store_true", help="re-map people to slots left to right")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("delete", help="remove a saved pose from a project")
    p.add_argument("name")
    p.add_argument("--project", type=Path, required=True)
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("derive", help="save a mirrored and/or reordered copy of a pose in a project")
    p.add_argument("name")
    p.add_argument("new_name")
    p.add_argument("--project", type=Path, required=True)
    p.add_argument("--mirror", action="store_true", help="mirror left-right (limbs swap sides)")
    p.add_argument("--left-to-right", action="store_true", help="re-map people to slots left to right")
    p.add_argument("--order", help="new slot order as old person indices, e.g. 1,0")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_derive)


def _library(project: Path | None, *, must_exist: bool = False):
    from ..services.poses import PoseLibrary

    if project is None:
        return PoseLibrary()
    if not project.is_dir():
        if must_exist or project.exists():
            raise ProjectError(f"Project folder {project} does not exist; create the project first.")
    return PoseLibrary.for_project(project)


def parse_size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text or "")
    if not match:
        raise InvalidInputError(f"--size {text!r}: write the size as WxH, e.g. 960x1280.")
    w, h = int(match.group(1)), int(match.group(2))
    if not (16 <= w <= 8192 and 16 <= h <= 8192):
        raise InvalidInputError(f"--size {text!r}: width and height must be between 16 and 8192.")
    return w, h


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    library = _library(args.project)
    entries = [e for e in library.list() if args.people is None or e.num_people == args.people]
    width = max((len(e.name) for e in entries), default=4)
    for e in entries:
        print(f"{e.name:<{width}}  {e.num_people}  {e.source:<7}  {e.description}")
    return 0


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    from ..fsutil import atomic_write_bytes
    from ..perception.pose import render_pose

    import io

    library = _library(args.project)
    pose = library.get(args.name)
    width, height = parse_size(args.size) if args.size else (pose.width, pose.height)
    image = render_pose(pose, width, height)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    out = atomic_write_bytes(args.out, buffer.getvalue())
    print(f"{out} ({width}x{height}, {pose.num_people} {'person' if pose.num_people == 1 else 'people'})")
    return 0


def cmd_extract(args: argparse.Namespace, settings: Settings) -> int:
    from ..services.container import build_services

    library = _library(args.project, must_exist=True)
    # The estimator as the app gets it: from the services, its model calls through the GPU worker.
    estimator = build_services(settings, backend="draft").pose_estimator(detect_resolution=args.detect_resolution)
    pose = library.extract(
        args.photo, args.name, estimator, description=args.description, overwrite=args.overwrite
    )
    print(
        f"saved pose {pose.name!r}: {pose.num_people} {'person' if pose.num_people == 1 else 'people'} "
        f"(left to right = character slots) in {library.poses_dir}"
    )
    return 0


def cmd_derive(args: argparse.Namespace, settings: Settings) -> int:
    library = _library(args.project, must_exist=True)
    order = None
    if args.order:
        try:
            order = [int(v) for v in args.order.split(",")]
        except ValueError:
            raise InvalidInputError(f"--order {args.order!r}: give person indices like 1,0.") from None
    pose = library.derive(
        args.name, args.new_name, mirror=args.mirror, order=order,
        left_to_right=args.left_to_right, overwrite=args.overwrite,
    )
    print(f"saved pose {pose.name!r} ({_people(pose.num_people)}) in {library.poses_dir}")
    return 0


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    library = _library(args.project, must_exist=True)
    pose = library.import_file(args.file, args.name, left_to_right=args.left_to_right, overwrite=args.overwrite)
    print(f"saved pose {pose.name!r} ({_people(pose.num_people)}) in {library.poses_dir}")
    return 0


def _people(count: int) -> str:
    return f"{count} person" if count == 1 else f"{count} people"


def cmd_delete(args: argparse.Namespace, settings: Settings) -> int:
    library = _library(args.project, must_exist=True)
    library.delete(args.name)
    print(f"deleted pose {args.name!r} from {library.poses_dir}")
    return 0
