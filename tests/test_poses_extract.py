"""Pose extraction through controlnet-aux's OpenposeDetector, offline.

The detector is loaded from a local folder of synthetic weights: random state dicts with the real
keys and shapes of body_pose_model.pth, hand_pose_model.pth and facenet.pth, saved with torch.save.
This proves the plumbing (files -> OpenposeDetector -> Person list -> Pose -> project file), not
accuracy: random weights usually find nobody, and the tests assert what follows from that.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from net_guard import no_network, refuse_imports  # noqa: F401  (no_network: a fixture)
from storymaker.cli import main
from storymaker.domain.poses import Pose
from storymaker.errors import CheckpointError, PoseError, WeightsNotFoundError
from storymaker.perception.pose import ANNOTATOR_FILES, OpenposeEstimator, extract_pose, people_from_results
from storymaker.services.poses import PoseLibrary


def _synthetic_annotators(folder):
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from controlnet_aux.open_pose.face import FaceNet
        from controlnet_aux.open_pose.model import bodypose_model, handpose_model

    generator = torch.Generator().manual_seed(0)
    # Body and hand checkpoints are stored without the first key component (controlnet-aux's
    # util.transfer adds it back); facenet.pth is loaded as is. fp16 halves the files.
    for make, filename, strip in (
        (bodypose_model, "body_pose_model.pth", True),
        (handpose_model, "hand_pose_model.pth", True),
        (FaceNet, "facenet.pth", False),
    ):
        with torch.device("meta"):
            model = make()
        state = {}
        for key, value in model.state_dict().items():
            name = key.split(".", 1)[1] if strip else key
            state[name] = torch.randn(value.shape, generator=generator, dtype=torch.float16).mul_(0.02)
        torch.save(state, folder / filename)
    return folder


@pytest.fixture(scope="module")
def annotators(tmp_path_factory):
    return _synthetic_annotators(tmp_path_factory.mktemp("annotators"))


def _photo():
    rng = np.random.default_rng(0)
    return Image.fromarray((rng.random((200, 72, 3)) * 255).astype(np.uint8))


@pytest.fixture(scope="module")
def extracted(annotators):
    """One real detection on the synthetic weights, shared by the tests below (it is the slow part)."""
    estimator = OpenposeEstimator(str(annotators), detect_resolution=64)
    return estimator, extract_pose(_photo(), "from-photo", estimator)


def test_openpose_from_local_folder_extracts_a_pose(annotators, extracted, tmp_path):
    from controlnet_aux.open_pose import OpenposeDetector

    estimator, pose = extracted
    detector = estimator.load()
    assert isinstance(detector, OpenposeDetector)
    assert estimator.load() is detector  # loaded once
    assert OpenposeEstimator(str(annotators), detect_resolution=64).load() is detector  # shared
    assert isinstance(pose, Pose)
    assert (pose.width, pose.height) == (72, 200) and pose.source == "project"
    for person in pose.people:
        assert len(person.points) == 18
    xs = [p.center_x for p in pose.people]
    assert xs == sorted(xs)
    library = PoseLibrary.for_project(tmp_path / "project")
    if pose.num_people == 0:
        with pytest.raises(PoseError, match="no people"):
            library.save(pose)
    else:
        library.save(pose)
        assert library.get("from-photo").num_people == pose.num_people


def test_cli_extract_through_the_detector(annotators, extracted, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("STORYMAKER_POSE_ANNOTATORS", str(annotators))
    project = tmp_path / "project"
    project.mkdir()
    photo_path = tmp_path / "photo.png"
    _photo().save(photo_path)
    code = main(["poses", "extract", str(photo_path), "from-photo", "--project", str(project), "--detect-resolution", "64"])
    captured = capsys.readouterr()
    if extracted[1].num_people:
        assert code == 0, captured.err
        assert PoseLibrary.for_project(project).get("from-photo").num_people == extracted[1].num_people
    else:
        assert code == 2
        assert "No person was found in the photo" in captured.err
        assert not (project / "poses" / "from-photo.json").exists()


def test_people_from_detector_results_are_converted():
    from controlnet_aux.open_pose import BodyResult, Keypoint, PoseResult

    keypoints = [Keypoint(0.1 + 0.01 * i, 0.2 + 0.02 * i) for i in range(18)]
    keypoints[0] = None
    keypoints[3] = Keypoint(1.2, 0.5)  # outside the image: treated as missing
    result = PoseResult(BodyResult(keypoints, 10.0, 16), None, None, None)
    few = PoseResult(BodyResult([Keypoint(0.5, 0.5)] + [None] * 17, 1.0, 1), None, None, None)
    people = people_from_results([result, few])
    assert len(people) == 1
    person = people[0]
    assert person.points[0] is None and person.points[3] is None
    assert person.points[1] == pytest.approx((0.11, 0.22))


def test_offline_without_weights_fails_fast_with_a_clear_message(no_network, monkeypatch):
    """The missing files are found before controlnet-aux is imported, without a network attempt."""
    refuse_imports(monkeypatch, "controlnet_aux")
    with pytest.raises(WeightsNotFoundError) as info:
        OpenposeEstimator("lllyasviel/Annotators").load()
    no_network.check()
    message = str(info.value)
    assert "body_pose_model.pth" in message and "storymaker download" in message
    assert "STORYMAKER_POSE_ANNOTATORS" in message


def test_folder_missing_a_file_is_named(tmp_path):
    for name in ANNOTATOR_FILES[:2]:
        (tmp_path / name).write_bytes(b"x")
    with pytest.raises(WeightsNotFoundError, match="facenet.pth"):
        OpenposeEstimator(str(tmp_path)).load()
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        OpenposeEstimator(str(tmp_path / "absent")).load()


def test_corrupt_weights_are_reported(tmp_path):
    for name in ANNOTATOR_FILES:
        (tmp_path / name).write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="could not be loaded"):
        OpenposeEstimator(str(tmp_path)).load()


def test_cli_extract_offline_exits_2(tmp_path, capsys):
    project = tmp_path / "project"
    project.mkdir()
    Image.new("RGB", (64, 64)).save(tmp_path / "p.png")
    assert main(["poses", "extract", str(tmp_path / "p.png"), "x", "--project", str(project)]) == 2
    assert "OpenPose annotators" in capsys.readouterr().err
