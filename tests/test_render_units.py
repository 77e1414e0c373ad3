"""Small, model-free parts of the render engine: seeds, the pipeline cache, results, panel lists."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
import time

import pytest

from render_helpers import ROOT, panel, story, tiny_settings
from storymaker.errors import InvalidInputError
from storymaker.services.backends import DraftBackend
from storymaker.services.jobs import SEED_LIMIT, PanelResult, RenderReport, derive_seed, random_seed
from storymaker.services.pipelines import PipelineCache
from storymaker.services.render import RenderEngine


def test_derived_seeds_are_sha256_of_story_seed_and_index():
    for base, index in [(0, 0), (7, 3), (2**40, 11)]:
        digest = hashlib.sha256(f"{base}:{index}".encode()).digest()
        assert derive_seed(base, index) == int.from_bytes(digest[:4], "big")
    # Stable across processes (no PYTHONHASHSEED dependence).
    code = f"import sys; sys.path.insert(0, {str(ROOT)!r}); from storymaker.services.jobs import derive_seed; print(derive_seed(7, 3))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={"PYTHONHASHSEED": "123"})
    assert int(out.stdout) == derive_seed(7, 3)
    seeds = {random_seed() for _ in range(20)}
    assert len(seeds) > 1 and all(0 <= s < SEED_LIMIT for s in seeds)


def test_pipeline_cache_loads_once_across_threads():
    cache = PipelineCache()
    calls = []

    def loader():
        calls.append(threading.get_ident())
        time.sleep(0.05)
        return object()

    got = []
    threads = [threading.Thread(target=lambda: got.append(cache.get(("m", 1), loader))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and cache.loads[("m", 1)] == 1
    assert all(g is got[0] for g in got)
    cache.get(("m", 2), loader)  # another configuration: its own pipeline
    assert len(calls) == 2 and ("m", 2) in cache


def test_report_summary_and_flags():
    report = RenderReport(
        (PanelResult(0, "ok", seed=1), PanelResult(1, "error", seed=2, error="The GPU ran out of memory.")),
        backend="tiny",
    )
    assert not report.ok and len(report.finished) == 1 and len(report.failed) == 1
    assert report.summary() == "1 of 2 panels rendered. Panel 2: The GPU ran out of memory."


def test_unexpected_backend_error_fails_only_that_panel(tmp_path):
    class Flaky(DraftBackend):
        def render(self, job, **kwargs):
            if job.index == 0:
                raise ValueError("boom")
            return super().render(job, **kwargs)

    engine = RenderEngine(Flaky(), tiny_settings(tmp_path, backend="draft"))
    report = engine.render_story(story(panel("a"), panel("b")), keep=False)
    assert [r.status for r in report.results] == ["error", "ok"]
    assert "ValueError: boom" in report.results[0].error and "-v" in report.results[0].error


def test_panel_size_and_steps_precedence(tmp_path):
    engine = RenderEngine(DraftBackend(), tiny_settings(tmp_path, backend="draft"))
    s = story(panel("a"), panel("b", size=(128, 96), steps=9, guidance=1.0), size=(256, 192), steps=4, guidance=5.0)
    a, b = engine.job(s, 0), engine.job(s, 1)
    assert (a.width, a.height, a.steps, a.guidance_scale) == (256, 192, 4, 5.0)
    assert (b.width, b.height, b.steps, b.guidance_scale) == (128, 96, 9, 1.0)
    bare = engine.job(story(panel("c")), 0)
    assert (bare.width, bare.height, bare.steps) == (64, 64, 2)  # the settings'
    with pytest.raises(InvalidInputError, match="Panel 3 does not exist"):
        engine.job(s, 2)


def test_cli_panel_lists():
    from storymaker.cli.render import parse_panels

    assert parse_panels(None, 3) is None
    assert parse_panels("1,3", 3) == [0, 2]
    assert parse_panels("2-4, 2", 5) == [1, 2, 3]
    for bad in ("0", "4", "x", ","):
        with pytest.raises(InvalidInputError):
            parse_panels(bad, 3)
