"""PoseLibrary: presets + a project's saved poses; and the `poses` command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from storymaker.cli import main
from storymaker.domain.poses import make_pose
from storymaker.errors import PoseError
from storymaker.perception.pose import extract_pose
from storymaker.services.poses import PoseLibrary

from poses_helpers import skeleton


class FakeEstimator:
    """Stands in for OpenPose: returns fixed people (right-most first) to test the plumbing."""

    name = "fake"

    def __init__(self, people):
        self.people = people
        self.seen = []

    def detect(self, image):
        self.seen.append(image.size)
        return list(self.people)


def two_people_right_first():
    pose = make_pose("x", [skeleton(0.75, scale=0.5), skeleton(0.25, scale=0.5)])
    return pose.people


@pytest.fixture
def library(tmp_path):
    return PoseLibrary.for_project(tmp_path / "project")


def test_presets_and_project_poses_are_listed(library):
    names = library.names()
    assert "standing" in names and "two-sitting-facing" in names
    library.save(make_pose("my-pose", [skeleton()]))
    entries = {e.name: e for e in library.list()}
    assert entries["my-pose"].source == "project" and entries["my-pose"].num_people == 1
    assert entries["standing"].source == "preset" and entries["standing"].preview.is_file()
    assert library.names(num_people=3) == ["three-standing-group", "three-walking-group"]
    assert "my-pose" in library


def test_save_get_delete(library):
    path = library.save(make_pose("hero-stance", [skeleton()], 512, 768, "a note"))
    assert path == library.poses_dir / "hero-stance.json"
    assert json.loads(path.read_text())["name"] == "hero-stance"
    pose = library.get("hero-stance")
    assert pose.source == "project" and pose.description == "a note" and (pose.width, pose.height) == (512, 768)
    with pytest.raises(PoseError, match="already has a pose"):
        library.save(make_pose("hero-stance", [skeleton()]))
    library.save(make_pose("hero-stance", [skeleton(0.4)]), overwrite=True)
    assert library.get("hero-stance").people[0].point("neck")[0] == pytest.approx(0.4)
    library.delete("hero-stance")
    with pytest.raises(PoseError, match="Unknown pose"):
        library.get("hero-stance")


def test_presets_are_protected(library):
    with pytest.raises(PoseError, match="built-in"):
        library.save(make_pose("standing", [skeleton()]))
    with pytest.raises(PoseError, match="built-in"):
        library.delete("standing")


def test_unknown_pose_suggests_close_names(library):
    with pytest.raises(PoseError, match="Did you mean 'standing'"):
        library.get("standin")


def test_library_without_project_cannot_save():
    with pytest.raises(PoseError, match="no project"):
        PoseLibrary().save(make_pose("x", [skeleton()]))


def test_broken_project_file_is_skipped_in_listings(library):
    library.poses_dir.mkdir(parents=True)
    (library.poses_dir / "broken.json").write_text("{")
    library.save(make_pose("fine", [skeleton()]))
    assert "fine" in library.names() and "broken" not in library.names()


def test_derive_mirrored_and_reordered(library):
    mirrored = library.derive("walking", "walking-left", mirror=True)
    original = library.get("walking")
    assert mirrored.people[0].point("neck")[0] == pytest.approx(1 - original.people[0].point("neck")[0], abs=1e-4)
    assert library.get("walking-left").source == "project"
    swapped = library.derive("two-talking", "two-talking-swapped", order=[1, 0])
    assert swapped.people[0] == library.get("two-talking").people[1]


def test_extract_orders_people_left_to_right_and_keeps_the_photo_aspect(tmp_path, library):
    photo = Image.new("RGB", (640, 480), (120, 120, 120))
    estimator = FakeEstimator(two_people_right_first())
    pose = extract_pose(photo, "duo", estimator)
    assert estimator.seen == [(640, 480)]
    assert (pose.width, pose.height) == (640, 480) and pose.source == "project"
    assert [round(p.center_x, 2) for p in pose.people] == [0.25, 0.75]
    photo_path = tmp_path / "duo.png"
    photo.save(photo_path)
    saved = library.extract(photo_path, "duo", estimator)
    assert library.get("duo").num_people == 2
    assert saved.people[0].center_x < saved.people[1].center_x


def test_extract_with_nobody_found_says_so(library):
    photo = Image.new("RGB", (320, 240))
    pose = extract_pose(photo, "empty", FakeEstimator([]))
    assert pose.num_people == 0
    with pytest.raises(PoseError, match="no people"):
        library.save(pose)
    with pytest.raises(PoseError, match="No person was found in the photo"):
        library.extract(photo, "empty", FakeEstimator([]))
    assert not (library.poses_dir / "empty.json").exists()


# -- command line -----------------------------------------------------------------------------


def test_cli_list(capsys, tmp_path):
    project = tmp_path / "p"
    PoseLibrary.for_project(project).save(make_pose("mine", [skeleton()]))
    assert main(["poses", "list", "--project", str(project)]) == 0
    out = capsys.readouterr().out
    assert "standing-arms-crossed" in out and "two-sitting-facing" in out
    assert any(line.split()[:3] == ["mine", "1", "project"] for line in out.splitlines())
    assert main(["poses", "list", "--people", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["three-standing-group", "three-walking-group"]


def test_cli_show_writes_the_controlnet_image(capsys, tmp_path):
    out = tmp_path / "pose.png"
    assert main(["poses", "show", "two-talking", "--out", str(out), "--size", "960x1280"]) == 0
    image = Image.open(out)
    assert image.size == (960, 1280) and image.mode == "RGB"
    assert (np.asarray(image).sum(axis=2) > 0).sum() > 1000
    assert "2 people" in capsys.readouterr().out


def test_cli_errors_exit_2_with_a_message(capsys, tmp_path):
    assert main(["poses", "show", "nope", "--out", str(tmp_path / "x.png")]) == 2
    assert "Unknown pose 'nope'" in capsys.readouterr().err
    assert main(["poses", "show", "standing", "--out", str(tmp_path / "x.png"), "--size", "big"]) == 2
    assert "WxH" in capsys.readouterr().err
    assert main(["poses", "extract", str(tmp_path / "a.png"), "x", "--project", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_derive(capsys, tmp_path):
    project = tmp_path / "p"
    project.mkdir()
    assert main(["poses", "derive", "two-talking", "talk-mirrored", "--project", str(project), "--mirror"]) == 0
    assert PoseLibrary.for_project(project).get("talk-mirrored").num_people == 2
    assert main(["poses", "derive", "two-talking", "bad", "--project", str(project), "--order", "0,0"]) == 2
    assert "arrangement" in capsys.readouterr().err


def test_import_openpose_json_and_delete(capsys, tmp_path):
    project = tmp_path / "p"
    project.mkdir()
    flat_people = []
    for cx in (0.7, 0.3):  # right-most first, as a detector might list them
        flat = []
        for p in skeleton(cx, scale=0.5):
            flat += [0, 0, 0] if p is None else [p[0] * 800, p[1] * 600, 0.8]
        flat_people.append({"pose_keypoints_2d": flat})
    source = tmp_path / "editor-export.json"
    source.write_text(json.dumps({"canvas_width": 800, "canvas_height": 600, "people": flat_people}))
    assert main(["poses", "import", str(source), "duo-imported", "--project", str(project), "--left-to-right"]) == 0
    pose = PoseLibrary.for_project(project).get("duo-imported")
    assert (pose.width, pose.height, pose.num_people) == (800, 600, 2)
    assert pose.people[0].center_x == pytest.approx(0.3, abs=1e-3)
    assert main(["poses", "delete", "duo-imported", "--project", str(project)]) == 0
    assert "duo-imported" not in PoseLibrary.for_project(project).names()
    assert main(["poses", "delete", "standing", "--project", str(project)]) == 2
    assert "built-in" in capsys.readouterr().err


def test_cli_derive_says_one_person(capsys, tmp_path):
    project = tmp_path / "p"
    PoseLibrary.for_project(project).save(make_pose("mine", [skeleton()]))
    assert main(["poses", "derive", "waving", "waving-left", "--mirror", "--project", str(project)]) == 0
    assert "'waving-left' (1 person)" in capsys.readouterr().out
