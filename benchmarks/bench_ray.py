"""Panels per second with 1 and 2 local Ray workers on the tiny backend, side by side in one run,
against the same panels rendered here without Ray; then what N GPUs would give.

    python benchmarks/bench_ray.py                         # 12 panels, 64x64, 4 steps, 1 and 2 workers
    python benchmarks/bench_ray.py --panels 24 --size 128 --steps 8 --workers 1,2,4

One local cluster (``ray.init(num_cpus=max workers)``); for each worker count a fresh pool loads the
tiny pipeline once per worker (timed apart: "start s"), then renders every panel of a one-character
story into a fresh project, kept by the driver as in ``render --ray`` ("render s": the panels only).
Every render uses ``--threads`` torch threads (default 1: on this 2-core, shared machine tiny
models ran ~10x slower with 2 threads than with 1); "here" is the engine without Ray, in this process. The driver's own cost per panel (writing the version: a PNG of a 1024x1024 image) is timed
too: it bounds how many GPUs one driver can keep busy. Wall-clock seconds on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _project(services, folder: Path, characters_dir: Path | None):
    project = services.open_project(folder, title=folder.name)
    if characters_dir is not None:
        shutil.copytree(characters_dir, project.characters_dir, dirs_exist_ok=True)
    return project


def _story(count: int, size: int, steps: int):
    from storymaker.domain.story import Panel, Story

    panels = tuple(Panel(prompt=f"[Ava] on the cliff path, scene {i}", characters=("Ava",)) for i in range(count))
    return Story(panels=panels, title="Bench", style="ink drawing", size=(size, size), steps=steps, seed=1)


def _keep_seconds(engine, job, runs: int = 5) -> float:
    """The driver's cost to keep one 1024x1024 panel (metadata + atomic PNG + JSON write)."""
    import dataclasses

    import numpy as np
    from PIL import Image

    noise = np.random.default_rng(0).integers(0, 256, (1024, 1024, 3), dtype=np.uint8)
    image = Image.fromarray(noise)  # noise: the worst case for PNG compression
    job = dataclasses.replace(job, width=1024, height=1024)
    started = time.perf_counter()
    for _ in range(runs):
        engine.keep(job, image)
    return (time.perf_counter() - started) / runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--panels", type=int, default=12)
    parser.add_argument("--size", type=int, default=64, help="panel width and height (multiple of 8)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--workers", default="1,2", help="worker counts to compare, e.g. 1,2")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per render (here and per worker)")
    parser.add_argument("--gpu-panel-seconds", type=float, default=12.0,
                        help="seconds one GPU takes per real panel, for the projection (an assumption, "
                        "not measured here: replace it with your GPU's figure)")
    args = parser.parse_args()
    counts = [int(c) for c in args.workers.split(",")]

    import ray
    import torch

    from storymaker.config import Settings
    from storymaker import distributed
    from storymaker.services.container import build_services
    from storymaker.services.pipelines import PipelineCache

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    settings = Settings(data_dir=work / "data", backend="tiny")
    story = _story(args.panels, args.size, args.steps)
    print(f"{args.panels} panels, {args.size}x{args.size}, {args.steps} steps, tiny backend, {cores} cores, "
          f"{args.threads} torch thread(s) per render, ray {ray.__version__}, torch {torch.__version__}")

    # Here, without Ray: the engine on all cores (pipeline loaded and warmed up first).
    torch.set_num_threads(args.threads)
    services = build_services(settings, backend="tiny", pipeline_cache=PipelineCache())
    seed_project = _project(services, work / "seed", None)
    services.character_registry(seed_project).add("Ava", str(ROOT / "examples" / "photos" / "astronaut.png"))
    characters = seed_project.characters_dir
    engine = services.engine(_project(services, work / "here", characters))
    engine.render_story(story, panels=[0], keep=False)
    started = time.perf_counter()
    report = engine.render_story(story)
    here = time.perf_counter() - started
    assert report.ok, report.summary()
    rows = [("here (no Ray)", "-", here, args.panels / here)]

    ray.init(num_cpus=max(counts), include_dashboard=False, log_to_driver=False,
             object_store_memory=200 * 2**20,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}})
    driver = distributed.driver_services(settings)
    rates = {}
    keep = None
    try:
        for count in counts:
            with distributed.RayRenderPool("tiny", driver.settings, workers=count,
                                           threads=args.threads) as pool:
                started = time.perf_counter()
                ready = pool.wait_ready()
                start_s = time.perf_counter() - started
                if ready != count:
                    raise SystemExit(f"only {ready} of {count} workers started: {pool.errors}")
                project = _project(driver, work / f"ray-{count}", characters)
                run_engine = driver.engine(project)
                started = time.perf_counter()
                (result,) = pool.render([distributed.StoryRun(run_engine, story)])
                seconds = time.perf_counter() - started
                assert result.ok, result.summary()
                rates[count] = args.panels / seconds
                rows.append((f"Ray, {count} worker{'s' if count > 1 else ''}", f"{start_s:.1f}", seconds, rates[count]))
                if keep is None:
                    keep = _keep_seconds(run_engine, run_engine.job(story, 0))
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n| run | start s | render s | panels/s | vs 1 worker |\n|---|---|---|---|---|")
    base = rates.get(counts[0])
    for name, start, seconds, rate in rows:
        ratio = f"{rate / base:.2f}x" if base else "-"
        print(f"| {name} | {start} | {seconds:.2f} | {rate:.2f} | {ratio} |")
    if len(counts) > 1:
        top = counts[-1]
        print(f"\n{top} workers vs 1: {rates[top] / rates[counts[0]]:.2f}x the panels per second "
              f"(ideal {top / counts[0]:.0f}x; the workers share {cores} cores with the driver).")
    measured = 1 / rates[counts[0]] - here / args.panels if counts[0] == 1 else 0.0
    overhead = max(0.0, measured)
    print(f"Ray's cost per panel with 1 worker, over rendering here: {measured * 1000:.0f} ms "
          "(scheduling, moving the image, the driver's write; a negative figure is load noise).")
    print(f"The driver keeps one 1024x1024 panel (metadata + PNG + JSON, atomic) in {keep * 1000:.0f} ms.")
    t = args.gpu_panel_seconds
    print(f"\nOn N GPUs, if one GPU renders a panel in {t:.0f} s (assumed: --gpu-panel-seconds), panels "
          "arrive at N / (t + Ray's cost) per second, until the driver's writes saturate at "
          f"{1 / keep:.1f} panels/s (about {t / keep:.0f} GPUs):")
    for n in (1, 2, 4, 8, 16, 32):
        rate = min(n / (t + overhead), 1 / keep)
        print(f"  {n:>2} GPUs: {rate:.2f} panels/s, {3600 * rate:.0f} panels/hour")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
