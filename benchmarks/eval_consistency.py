"""Character consistency, the StoryMaker paper's protocol: character photos x prompts.

    python benchmarks/eval_consistency.py --photos PHOTOS_DIR --prompts PROMPTS.txt \
        [--backend storymaker|tiny] [--size 1024x1024] [--steps 25] [--seed 0] [--json OUT.json]

Every photo in PHOTOS_DIR (``.png``/``.jpg``/``.jpeg``/``.webp``) is registered as a character named
after its file; a ``<photo stem>.txt`` beside it holds that character's text description (else the
face-analysis noun: "a woman", "a man"). Each line of PROMPTS.txt is a prompt (``#`` comments and
blank lines skipped); ``{}`` marks where the character goes, else the prompt follows it
("[Name] <prompt>"). Every character is rendered with every prompt twice, with the same seed:

- **StoryMaker**: the configured pipeline (adapter at the settings' scales);
- **SDXL, text only** (the floor): the same pipeline with ``ip_adapter_scale=0`` and ``lora_scale=0``,
  which equals diffusers' plain SDXL pipeline (tests/test_models_pipeline.py), so only the
  character's text description says who it is.

Each render is scored by :mod:`storymaker.services.scores` (face similarity to the registered face,
CLIP-I to the registered body crop, CLIP-T to the prompt), and the means are printed side by side.
With ``--backend tiny`` it runs anywhere in seconds on tiny random models and stand-ins (the test
suite runs it so that it cannot rot): those figures are meaningless, and the table says so.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from statistics import fmean
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
METHODS = (("storymaker", "StoryMaker"), ("sdxl_text_only", "SDXL, text only (floor)"))


def read_prompts(path: Path) -> list[str]:
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    prompts = [line for line in lines if line and not line.startswith("#")]
    if not prompts:
        raise SystemExit(f"{path} has no prompts: write one prompt per line.")
    return prompts


def character_photos(folder: Path) -> list[Path]:
    photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
    if not photos:
        raise SystemExit(f"{folder} has no photos ({', '.join(PHOTO_SUFFIXES)}).")
    return photos


def _name(photo: Path) -> str:
    clean = "".join(ch if ch.isalnum() else " " for ch in photo.stem).split()
    return " ".join(clean).title()[:40] or "Character"


def _panel_prompt(template: str, name: str) -> str:
    return template.replace("{}", f"[{name}]") if "{}" in template else f"[{name}] {template}"


def _means(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    faces = [c["face_similarity"] for r in records for c in r["characters"]]
    clip_i = [c["clip_i"] for r in records for c in r["characters"] if c["clip_i"] is not None]
    clip_t = [r["clip_t"] for r in records if r["clip_t"] is not None]
    return {
        "renders": len(records),
        "face_similarity": round(fmean(faces), 4) if faces else None,
        "clip_i": round(fmean(clip_i), 4) if clip_i else None,
        "clip_t": round(fmean(clip_t), 4) if clip_t else None,
        "off_model": sum(1 for r in records if r["off_model"]),
        "failed": 0,
    }


def evaluate(photos: Sequence[Path], prompts: Sequence[str], settings, work: Path, *, seed: int = 0) -> dict[str, Any]:
    """Render and score every (character, prompt) pair with both methods; returns the results."""
    from storymaker.domain.story import Panel, Story
    from storymaker.services.container import build_services
    from storymaker.services.render import RenderEngine

    services = build_services(settings)
    project = services.open_project(work / "project", create=True, title="consistency evaluation")
    registry = services.character_registry(project)
    names = []
    for photo in photos:
        description_file = photo.with_suffix(".txt")
        description = description_file.read_text(encoding="utf-8").strip() if description_file.is_file() else ""
        names.append(registry.add(_name(photo), photo, description=description).name)
    panels = [Panel(prompt=_panel_prompt(p, name), characters=(name,)) for name in names for p in prompts]
    story = Story(panels=tuple(panels), title="consistency evaluation", seed=seed)

    results: dict[str, Any] = {}
    scorer = None
    for key, _ in METHODS:  # one method at a time: a fused LoRA is re-fused only once
        method_settings = settings if key == "storymaker" else settings.replace(ip_adapter_scale=0.0, lora_scale=0.0)
        engine = RenderEngine(services.backend, method_settings, registry=registry,
                              poses=services.pose_library(None), scorer=scorer if scorer is not None else "auto")
        scorer = engine.scorer
        if scorer is None:
            raise SystemExit(f"The {services.backend_name} backend gives no scores: use --backend storymaker or tiny.")
        report = engine.render_story(story, keep=False, best_of=1)
        records, failed = [], 0
        for result in report.results:
            scores = result.metadata.get("scores") if result.ok else None
            if scores is None:
                failed += 1
                print(f"{key}: panel {result.index + 1} has no scores: {result.error or 'scoring failed'}", file=sys.stderr)
                continue
            records.append(scores | {"prompt": panels[result.index].prompt, "seed": result.seed})
        results[key] = {"summary": _means(records) | {"failed": failed}, "renders": records}
    stand_in = bool(scorer.stand_in)
    return {
        "backend": services.backend_name,
        "stand_in": stand_in,
        "note": "tiny random models and stand-ins: the figures are meaningless" if stand_in else "",
        "characters": names,
        "prompts": list(prompts),
        "models": scorer.models,
        "settings": {"width": settings.width, "height": settings.height, "steps": settings.steps,
                     "ip_adapter_scale": settings.ip_adapter_scale, "lora_scale": settings.lora_scale},
        "methods": results,
    }


def format_results(results: dict[str, Any]) -> str:
    header = ["method", "renders", "face sim", "CLIP-I", "CLIP-T", "off-model", "failed"]
    rows = []
    for key, label in METHODS:
        s = results["methods"][key]["summary"]
        cell = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        rows.append([label, str(s["renders"]), cell(s["face_similarity"]), cell(s["clip_i"]), cell(s["clip_t"]),
                     str(s["off_model"]), str(s["failed"])])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    if results["stand_in"]:
        lines.append(f"NOTE: {results['note']}.")
    lines.append(f"{len(results['characters'])} character(s) x {len(results['prompts'])} prompt(s), "
                 f"backend {results['backend']}, {results['settings']['width']}x{results['settings']['height']}, "
                 f"{results['settings']['steps']} steps")
    for row in [header, ["-" * w for w in widths], *rows]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    lines.append("models: " + ", ".join(f"{k} {v}" for k, v in results["models"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", required=True, type=Path, help="folder of character photos (one person each)")
    parser.add_argument("--prompts", required=True, type=Path, help="text file, one prompt per line")
    parser.add_argument("--backend", choices=("storymaker", "tiny"), default="storymaker")
    parser.add_argument("--size", default=None, metavar="WxH", help="render size (default: the settings')")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0, help="story seed: each render's seed derives from it")
    parser.add_argument("--json", type=Path, default=None, help="also write every score as JSON")
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    args = parser.parse_args(argv)

    from storymaker.config import Settings
    from storymaker.errors import StoryMakerError

    changes: dict[str, Any] = {"backend": args.backend, "score_renders": True, "best_of": 1}
    if args.size:
        width, height = (int(v) for v in args.size.lower().split("x"))
        changes.update(width=width, height=height)
    if args.steps:
        changes["steps"] = args.steps
    settings = Settings.from_env(**changes)
    try:
        with tempfile.TemporaryDirectory(prefix="storymaker-eval-") as tmp:
            work = args.work or Path(tmp)
            results = evaluate(character_photos(args.photos), read_prompts(args.prompts), settings, work, seed=args.seed)
    except StoryMakerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_results(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
