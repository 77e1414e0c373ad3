"""The GPU worker: one lock for every model call, one perception wiring, encoder sharing, the
duration asked of ZeroGPU, a Cancel kept while queued, and failures before any work."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
from PIL import Image

from ui_helpers import PHOTO, make_services

from storymaker.config import Settings
from storymaker.errors import InvalidInputError
from storymaker.services.gpu import DEVICE_LOCK, GpuWorker, PanelWork, gpu_duration, zero_gpu_enabled
from storymaker.services.pipelines import PipelineCache


class Recorder:
    """A perception component that records whether the device lock is held during its calls."""

    name = "recorder"

    def __init__(self, lock):
        self.lock = lock
        self.held: list[tuple[str, bool]] = []

    def _note(self, what):
        self.held.append((what, self.lock._is_owned()))

    def analyze(self, rgb):
        self._note("analyze")
        return []

    def encode(self, images):
        self._note("encode")

    def detect(self, image):
        self._note("detect")
        return []


# ---- one lock ------------------------------------------------------------------------------


def test_pipelines_and_perception_share_the_device_lock():
    cache = PipelineCache()
    entry = cache.entry(("fake",), lambda: object())
    assert entry.lock is DEVICE_LOCK
    worker = GpuWorker(Settings())
    assert worker.lock is DEVICE_LOCK
    component = Recorder(worker.lock)
    guarded = worker.guard(component)
    guarded.analyze(None)
    guarded.encode([])
    guarded.detect(None)
    assert component.held == [("analyze", True), ("encode", True), ("detect", True)]
    assert guarded.name == "recorder" and worker.guard(guarded) is guarded and worker.guard(None) is None
    assert not worker.lock._is_owned()


def test_a_model_call_waits_for_a_running_render():
    worker = GpuWorker(Settings(), lock=threading.RLock())
    order: list[str] = []
    guarded = worker.guard(SimpleNamespace(encode=lambda images: order.append("encode")))
    holding = threading.Event()

    def render():
        with worker.lock:
            holding.set()
            caller.start()
            caller.join(0.3)  # the encoder call cannot get in while the render holds the device
            order.append("render done" if caller.is_alive() else "render overtaken")

    caller = threading.Thread(target=guarded.encode, args=([],))
    renderer = threading.Thread(target=render)
    renderer.start()
    renderer.join()
    caller.join()
    assert order == ["render done", "encode"]


def test_registries_share_one_guarded_instance_of_each_component(tmp_path):
    services = make_services(tmp_path / "data")
    first = services.character_registry(tmp_path / "one")
    second = services.character_registry(tmp_path / "two")
    assert first.image_encoder is second.image_encoder and first.face_analyzer is second.face_analyzer
    assert type(first.image_encoder).__name__ == "Guarded"
    estimator = services.pose_estimator()
    assert type(estimator).__name__ == "Guarded" and estimator.name.startswith("openpose:")


# ---- registration loads the image encoder alone, shared with the pipeline --------------------


def test_registration_loads_the_encoder_alone_and_the_pipeline_reuses_it(monkeypatch, tmp_path):
    from storymaker.models import pipeline as pipeline_module
    from storymaker.models.tiny import tiny_image_encoder
    from storymaker.perception import clip
    from storymaker.services.container import make_backend, real_perception

    settings = Settings(data_dir=tmp_path, image_encoder="test/tiny-encoder-for-sharing", controlnet_pose="",
                        backend="storymaker")
    standalone = tiny_image_encoder()
    monkeypatch.setattr(clip, "_standalone_loader", lambda s, source: lambda: standalone)
    monkeypatch.delitem(clip._SHARED, settings.image_encoder, raising=False)
    loads = []

    def from_settings(cls, s, *, with_controlnet=None, image_encoder=None, **kwargs):
        loads.append(image_encoder)
        return SimpleNamespace(image_encoder=image_encoder, set_progress_bar_config=lambda **kw: None)

    monkeypatch.setattr(pipeline_module.StoryMakerPipeline, "from_settings", classmethod(from_settings))
    backend = make_backend("storymaker", settings, PipelineCache())
    encoder = real_perception(settings, backend).image_encoder()
    assert loads == [] and not backend.loaded  # registering never loads the SDXL pipeline
    assert encoder.load() is standalone
    pipe = backend.entry().pipeline
    assert loads == [standalone] and pipe.image_encoder is standalone  # handed over, not loaded twice
    assert real_perception(settings, backend).image_encoder().model is standalone


# ---- the duration asked of ZeroGPU -----------------------------------------------------------


def test_duration_grows_with_the_work_up_to_the_ceiling():
    settings = Settings(gpu_duration_max=120, gpu_step_seconds=0.5)
    one = gpu_duration([PanelWork(1024, 1024, 25)], settings)
    four = gpu_duration([PanelWork(1024, 1024, 25)] * 4, settings)
    assert 20 <= one < four <= 120
    assert gpu_duration([PanelWork(1024, 1024, 25)] * 40, settings) == 120
    assert gpu_duration([], settings) == 20  # perception-only calls ask for the least


def test_zero_gpu_mode_from_the_environment_or_the_setting():
    assert zero_gpu_enabled(Settings(), {"SPACES_ZERO_GPU": "true"})
    assert not zero_gpu_enabled(Settings(), {})
    assert zero_gpu_enabled(Settings(zero_gpu="on"), {})
    assert not zero_gpu_enabled(Settings(zero_gpu="off"), {"SPACES_ZERO_GPU": "true"})
    with pytest.raises(Exception, match="STORYMAKER_ZERO_GPU"):
        Settings(zero_gpu="sometimes")


# ---- Cancel while queued ----------------------------------------------------------------------


def test_cancel_pressed_while_queued_is_kept(tmp_path):
    from storymaker.ui.cancel import CancelFlags

    flags = CancelFlags(tmp_path)
    flags.arm("gone")  # an expired session's folder is not brought back
    assert not (tmp_path / "gone").exists()
    (tmp_path / "s1").mkdir()
    ticket = flags.arm("s1")  # the click: the render is queued
    assert flags.cancel("s1")  # Cancel while it waits
    event = flags.fresh("s1", ticket)  # the render leaves the queue
    assert event.is_set()
    assert not flags.fresh("s1", flags.arm("s1")).is_set()  # a render clicked after the Cancel starts clear
    running = flags.fresh("s1")  # a render that was not armed
    with flags.busy("s1"):
        other_process = CancelFlags(tmp_path)  # a ZeroGPU worker process sees the same flag
        assert other_process.cancel("s1") and running.is_set()
    assert not flags.cancel("never-rendered")


def test_one_cancel_stops_the_running_render_and_those_waiting_behind_it(tmp_path):
    """A Cancel stopped only the running render: the render clicked behind it (after a page reload,
    say) started next and rendered the rest (QA). Renders clicked after the Cancel run."""
    from storymaker.ui.cancel import CancelFlags

    flags = CancelFlags(tmp_path)
    (tmp_path / "s1").mkdir()
    first = flags.fresh("s1", flags.arm("s1"))
    second, third = flags.arm("s1"), flags.arm("s1")  # two more clicks wait in the queue
    with flags.busy("s1"):
        assert flags.cancel("s1")
    assert first.is_set()
    assert flags.fresh("s1", second).is_set() and flags.fresh("s1", third).is_set()
    later = flags.fresh("s1", flags.arm("s1"))
    assert not later.is_set()
    assert not flags.cancel("s1")  # nothing runs or waits: "Nothing is rendering"
    assert later.is_set()  # (a render that starts now is still stopped by it)


def test_queued_render_that_was_cancelled_renders_nothing(tmp_path):
    from storymaker.ui import render_tab, story_tab
    from storymaker.ui.context import StudioContext
    from storymaker.ui.session import SessionManager

    services = make_services(tmp_path / "data")
    ctx = StudioContext(services, services.settings, SessionManager(services.settings.sessions_dir))
    sid = ctx.sessions.new_session()
    story_tab.validate(ctx, sid, "a street\n\na harbour\n")
    ticket = ctx.cancels.arm(sid)
    ctx.cancels.cancel(sid)
    options = render_tab.settings_from_widgets(64, 64, 2, 7.5, 0.8, 0.8, 0.7, -1)
    message = render_tab.run_render(ctx, sid, "all", 1, options, ticket=ticket)
    assert "cancelled" in message.lower()
    assert render_tab.panel_gallery(ctx, sid) == []


# ---- failures before work ----------------------------------------------------------------------


def test_panel_size_above_the_maximum_is_refused_in_the_ui_as_in_the_script(tmp_path):
    from storymaker.ui import render_tab, story_tab
    from storymaker.ui.context import StudioContext
    from storymaker.ui.session import SessionManager

    services = make_services(tmp_path / "data", max_panel_side=512)
    ctx = StudioContext(services, services.settings, SessionManager(services.settings.sessions_dir))
    sid = ctx.sessions.new_session()
    story_tab.validate(ctx, sid, "a street\n")
    too_big = render_tab.settings_from_widgets(1024, 256, 2, 7.5, 0.8, 0.8, 0.7, -1)
    with pytest.raises(InvalidInputError, match="MAX_PANEL_SIDE"):
        render_tab.run_render(ctx, sid, "all", 1, too_big)
    story_tab.validate(ctx, sid, "size: 1024x256\n\na street\n")
    fine = render_tab.settings_from_widgets(256, 256, 2, 7.5, 0.8, 0.8, 0.7, -1)
    with pytest.raises(InvalidInputError, match="1024x256"):
        render_tab.run_render(ctx, sid, "all", 1, fine)
    assert render_tab.panel_gallery(ctx, sid) == []  # nothing rendered


def _cli(args):
    from storymaker.cli import main

    return main(args)


def test_render_to_a_folder_that_cannot_be_written_fails_before_any_panel(tmp_path, capsys):
    story = tmp_path / "story.txt"
    story.write_text("a street\n\na harbour\n", encoding="utf-8")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the output folder should be", encoding="utf-8")
    project = tmp_path / "project"
    rc = _cli(["render", str(story), "--project", str(project), "--out", str(blocker / "comic.pdf"),
               "--backend", "draft", "--size", "64x64"])
    err = capsys.readouterr().err
    assert rc == 2 and "is a file, not a folder" in err and "Nothing was rendered" in err
    assert "Traceback" not in err and not project.exists()
    rc = _cli(["render", str(story), "--project", str(project), "--out", "/proc/storymaker-test/comic.pdf",
               "--backend", "draft", "--size", "64x64"])
    err = capsys.readouterr().err
    assert rc == 2 and "cannot be written" in err and "Traceback" not in err and not project.exists()


def test_render_size_above_the_maximum_fails_before_any_panel(tmp_path, capsys, monkeypatch):
    for key, value in (("MAX_PANEL_SIDE", "512"), ("WIDTH", "256"), ("HEIGHT", "256")):
        monkeypatch.setenv(f"STORYMAKER_{key}", value)
    story = tmp_path / "story.txt"
    story.write_text("size: 1024x512\n\na street\n", encoding="utf-8")
    project = tmp_path / "project"
    out = tmp_path / "comic.pdf"
    rc = _cli(["render", str(story), "--project", str(project), "--out", str(out), "--backend", "draft"])
    err = capsys.readouterr().err
    assert rc == 2 and "1024x512" in err and "MAX_PANEL_SIDE" in err and not out.exists()
    from storymaker.services.storage import Project

    assert Project.open(project).versions(0) == []
    assert _cli(["render", str(story), "--project", str(project), "--out", str(out), "--backend", "draft",
                 "--size", "2048x64"]) == 2
    assert "--size 2048x64" in capsys.readouterr().err


def test_character_analysis_runs_under_the_device_lock(tmp_path):
    services = make_services(tmp_path / "data")
    registry = services.character_registry(tmp_path / "project")
    seen = []
    encoder = registry.image_encoder.wrapped
    original = encoder.encode

    def spy(images):
        seen.append(services.worker.lock._is_owned())
        return original(images)

    encoder.encode = spy
    registry.analyze("Eileen", Image.open(PHOTO))
    assert seen == [True]
