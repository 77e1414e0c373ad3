"""ZeroGPU mode with a stand-in ``spaces`` module: the pipeline and the encoders load once at
start-up, N render calls load nothing, and each GPU call asks for a duration computed from its work."""

from __future__ import annotations

import functools
import sys
import types

import pytest

from ui_helpers import PHOTO, studio_settings

from storymaker.services.gpu import PanelWork, gpu_duration
from storymaker.services.pipelines import PipelineCache


class StandInSpaces(types.ModuleType):
    """``spaces`` as ZeroGPU has it: ``GPU(duration=...)`` whose callable receives the decorated
    function's arguments; every call and the duration it asked for is recorded."""

    def __init__(self):
        super().__init__("spaces")
        self.calls: list[tuple[str, int]] = []
        self.decorated: list[str] = []

    def GPU(self, task=None, *, duration=None, **kwargs):  # noqa: N802 - the real name
        def decorate(fn):
            self.decorated.append(fn.__name__)

            @functools.wraps(fn)
            def wrapper(*args, **kw):
                seconds = duration(*args, **kw) if callable(duration) else duration
                self.calls.append((fn.__name__, seconds))
                return fn(*args, **kw)

            return wrapper

        return decorate(task) if task is not None else decorate


@pytest.fixture
def spaces(monkeypatch):
    module = StandInSpaces()
    monkeypatch.setitem(sys.modules, "spaces", module)
    return module


def _handler(blocks, api_name):
    for fn in blocks.fns.values():
        if fn.api_name == api_name:
            return fn
    raise AssertionError(f"no event {api_name}")


def test_startup_loads_once_and_renders_load_nothing(tmp_path, spaces):
    from storymaker.services.container import build_services
    from storymaker.ui import build_app

    cache = PipelineCache()
    settings = studio_settings(tmp_path / "data", backend="tiny", width=64, height=64, zero_gpu="on")
    services = build_services(settings, pipeline_cache=cache)
    assert services.worker.zero_gpu and services.worker.started
    assert sum(cache.loads.values()) == 1  # the pipeline, at start-up
    registry_encoder = services.character_registry(tmp_path / "p").image_encoder
    assert registry_encoder.loaded  # the encoders too: no call pays a load

    studio = build_app(services)
    ctx = studio.context
    sid = ctx.sessions.new_session()
    ctx.project(sid).write_script("a street\n\na harbour\n")
    render_all = _handler(studio.blocks, "render_all")
    assert render_all.concurrency_id == "gpu"
    assert {"render_all", "render_panel", "render_reroll", "on_analyze", "on_save", "on_extract",
            "example"} <= set(spaces.decorated)  # every model-running event, wrapped the same way
    for _ in range(3):
        message, gallery = render_all.fn(sid, 1, 64, 64, 2, 7.5, 0.8, 0.8, 0.7, -1, 1, progress=lambda *a, **k: None)
        assert "2 of 2 panels rendered" in message
    assert sum(cache.loads.values()) == 1  # three render calls loaded nothing
    expected = gpu_duration([PanelWork(64, 64, 2)] * 2, settings)
    assert spaces.calls == [("render_all", expected)] * 3


def test_duration_follows_the_panels_and_steps_asked_for(tmp_path, spaces):
    from storymaker.services.container import build_services
    from storymaker.ui import build_app

    settings = studio_settings(tmp_path / "data", backend="draft", zero_gpu="on", gpu_duration_max=60,
                               gpu_step_seconds=1.0)
    studio = build_app(build_services(settings, pipeline_cache=PipelineCache()))
    ctx = studio.context
    sid = ctx.sessions.new_session()
    ctx.project(sid).write_script("a street\n\na harbour\n\na hill\n  size: 1024x1024\n  steps: 40\n")
    render_all = _handler(studio.blocks, "render_all").fn
    render_one = _handler(studio.blocks, "render_panel").fn
    noop = lambda *a, **k: None  # noqa: E731
    render_one(sid, 1, 256, 256, 2, 7.5, 0.8, 0.8, 0.7, -1, 1, progress=noop)
    render_all(sid, 1, 256, 256, 2, 7.5, 0.8, 0.8, 0.7, -1, 1, progress=noop)
    render_one(sid, 3, 256, 256, 2, 7.5, 0.8, 0.8, 0.7, -1, 1, progress=noop)
    (_, one), (_, all_three), (_, big) = spaces.calls
    assert one == gpu_duration([PanelWork(256, 256, 2)], settings)
    assert big == gpu_duration([PanelWork(1024, 1024, 40)], settings) > one  # its own size and steps
    uncapped = gpu_duration([PanelWork(256, 256, 2)] * 2 + [PanelWork(1024, 1024, 40)], settings.replace(gpu_duration_max=999))
    assert uncapped > 60 and all_three == 60  # three panels, capped at the ceiling


#: Three panels whose script asks for 25 steps each (guidance 6 in the last), as a story written for
#: the Standard preset has them.
SCRIPTED_STEPS = "a street\n  steps: 25\n\na harbour\n  steps: 25\n\na hill\n  steps: 25\n  guidance: 6\n"
NOOP = lambda *a, **k: None  # noqa: E731


def _fast_studio(tmp_path, **changes):
    from storymaker.services.container import build_services
    from storymaker.ui import build_app

    values = dict(backend="draft", zero_gpu="on", gpu_duration_max=60, gpu_step_seconds=4.0)
    values.update(changes)
    settings = studio_settings(tmp_path / "data", **values)
    studio = build_app(build_services(settings, pipeline_cache=PipelineCache()))
    sid = studio.context.sessions.new_session()
    studio.context.project(sid).write_script(SCRIPTED_STEPS)
    return studio, sid, settings


def _rendered(project, position):
    """What was rendered for the panel at ``position`` (0-based), read back from its versions."""
    return [PanelWork(v.meta["width"], v.meta["height"], v.meta["num_inference_steps"], v.meta["guidance_scale"])
            for v in project.versions(position)]


def test_the_estimate_is_the_engines_own_plan_of_each_panel(tmp_path):
    from storymaker.domain.script.parser import parse_script
    from storymaker.models.fast import FAST_GUIDANCE, FAST_STEPS
    from storymaker.services.gpu import story_work
    from storymaker.services.render import RenderEngine

    story = parse_script(SCRIPTED_STEPS + "\na sea\n  size: 512x768\n")
    standard = studio_settings(tmp_path / "data", steps=30, guidance_scale=7.5)
    for settings in (standard, standard.replace(quality="fast"), standard.replace(quality="fast", best_of=3)):
        engine = RenderEngine(None, settings)
        planned = [engine.job(story, i) for i in range(len(story.panels))]
        expected = [PanelWork(j.width, j.height, j.steps, j.guidance_scale) for j in planned for _ in range(settings.best_of)]
        assert story_work(story, settings) == expected
    fast = story_work(story, standard.replace(quality="fast"))
    assert {(p.steps, p.guidance_scale) for p in fast} == {(FAST_STEPS, FAST_GUIDANCE)}  # the script's 25 steps replaced
    assert [p.steps for p in story_work(story, standard)] == [25, 25, 25, 30]


def test_a_fast_render_asks_for_its_own_steps_less_than_standard(tmp_path, spaces):
    from storymaker.models.fast import FAST_STEPS

    studio, sid, settings = _fast_studio(tmp_path)
    render_all = _handler(studio.blocks, "render_all").fn
    widgets = (256, 256, 25, 7.5, 0.8, 0.8, 0.7, -1, 1)
    render_all(sid, 1, *widgets, "Standard", progress=NOOP)
    render_all(sid, 1, *widgets, "Fast", progress=NOOP)
    (_, standard), (_, fast) = spaces.calls
    project = studio.context.project(sid)
    done_fast = [_rendered(project, i)[-1] for i in range(3)]  # the Fast render's versions
    assert {(p.steps, p.guidance_scale) for p in done_fast} == {(FAST_STEPS, 1.0)}
    assert fast == gpu_duration(done_fast, settings) == gpu_duration([PanelWork(256, 256, FAST_STEPS, 1.0)] * 3, settings)
    # a Fast step has no CFG batch: half a Standard step of the same size
    assert gpu_duration([PanelWork(256, 256, 8, 1.0)], settings) == gpu_duration([PanelWork(256, 256, 4, 7.5)], settings)
    done_standard = [_rendered(project, i)[0] for i in range(3)]
    assert [p.steps for p in done_standard] == [25, 25, 25]
    assert standard == 60 < gpu_duration(done_standard, settings.replace(gpu_duration_max=999))  # capped
    assert fast < standard


def test_best_of_and_rerolls_ask_for_every_render_and_the_cap_holds(tmp_path, spaces):
    from storymaker.models.fast import FAST_STEPS

    studio, sid, settings = _fast_studio(tmp_path, gpu_step_seconds=40.0, gpu_duration_max=300)
    handlers = {name: _handler(studio.blocks, f"render_{name}").fn for name in ("panel", "reroll", "all")}
    fast = PanelWork(256, 256, FAST_STEPS, 1.0)
    handlers["panel"](sid, 2, 256, 256, 25, 7.5, 0.8, 0.8, 0.7, -1, 3, "Fast", progress=NOOP)
    handlers["reroll"](sid, 2, 256, 256, 25, 7.5, 0.8, 0.8, 0.7, -1, 2, "Fast", progress=NOOP)
    assert _rendered(studio.context.project(sid), 1) == [fast] * 5  # 3 + 2 renders of panel 2
    assert spaces.calls == [("render_panel", gpu_duration([fast] * 3, settings)),
                            ("render_reroll", gpu_duration([fast] * 2, settings))]
    assert gpu_duration([fast] * 3, settings) > gpu_duration([fast] * 2, settings) > gpu_duration([fast], settings)
    handlers["all"](sid, 1, 256, 256, 25, 7.5, 0.8, 0.8, 0.7, -1, 8, "Fast", progress=NOOP)
    assert gpu_duration([fast] * 24, settings.replace(gpu_duration_max=999)) > 300
    assert spaces.calls[-1] == ("render_all", 300)  # 3 panels x best of 8, capped at the ceiling


def test_registering_a_character_in_zero_gpu_mode_is_a_gpu_call(tmp_path, spaces):
    from storymaker.services.container import build_services
    from storymaker.ui import build_app

    settings = studio_settings(tmp_path / "data", backend="draft", zero_gpu="on")
    studio = build_app(build_services(settings, pipeline_cache=PipelineCache()))
    sid = studio.context.sessions.new_session()
    analyze = _handler(studio.blocks, "analyze_character")
    assert analyze.concurrency_id == "gpu"
    analyze.fn(sid, str(PHOTO), None)
    assert spaces.calls == [("on_analyze", gpu_duration([], settings))]


def test_app_imports_spaces_first_in_zero_gpu_mode(monkeypatch, spaces):
    import app

    from storymaker.config import Settings

    assert app.import_spaces_first(Settings(zero_gpu="on"))
    assert not app.import_spaces_first(Settings(zero_gpu="off"))
    monkeypatch.setitem(sys.modules, "spaces", None)  # not installed
    with pytest.raises(Exception, match="pip install spaces"):
        app.import_spaces_first(Settings(zero_gpu="on"))


def test_render_missing_asks_only_for_the_panels_it_renders(tmp_path, spaces):
    studio, sid, settings = _fast_studio(tmp_path, gpu_duration_max=999)
    handlers = {name: _handler(studio.blocks, f"render_{name}").fn for name in ("panel", "missing")}
    widgets = (256, 256, 25, 7.5, 0.8, 0.8, 0.7, -1, 1, "Standard")
    assert "render_missing" in spaces.decorated
    handlers["panel"](sid, 2, *widgets, progress=NOOP)
    message, _ = handlers["missing"](sid, 1, *widgets, progress=NOOP)
    assert "2 of 2 panels rendered, 1 skipped (already rendered)" in message
    message, _ = handlers["missing"](sid, 1, *widgets, progress=NOOP)
    assert message.startswith("Nothing to render")
    project = studio.context.project(sid)
    done = [_rendered(project, i) for i in range(3)]
    assert [len(d) for d in done] == [1, 1, 1]
    (_, one), (_, two), (_, none) = spaces.calls
    assert one == gpu_duration(done[1], settings)
    assert two == gpu_duration(done[0] + done[2], settings) > one  # panels 1 and 3, not panel 2 again
    assert none == gpu_duration([], settings) < one
