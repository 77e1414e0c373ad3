"""`python -m storymaker download` and `python -m storymaker doctor`.

    download [--no-controlnet] [--no-perception] [--precision auto|fp16|fp32]
        fetch every hub model the configuration names into the Hugging Face cache (tqdm progress);
        the insightface and rembg models come from GitHub releases: it says where to get them and
        where to put them. Exit 0 when everything is present afterwards, 1 when only those manual
        downloads remain, 2 when a download is impossible (offline, no access).
    doctor [--precision]
        Python, torch, CUDA and GPU memory, package versions, and which weights are present locally;
        never touches the network; exit 0. --precision also measures, on the tiny pipeline on the
        CPU, how far the UNet weights move after 30 renders alternating lora_scale 0.5/0.9 in
        float16 and bfloat16 (LoRA fused and unfused) and whether the same seed still gives the
        same latents; exit 1 if anything drifted.
"""

from __future__ import annotations

import argparse
import platform
import sys
from importlib import metadata

from ..config import Settings

PACKAGES = ("torch", "diffusers", "transformers", "huggingface_hub", "accelerate", "peft", "safetensors",
            "insightface", "onnxruntime", "rembg", "controlnet-aux", "gradio")


def register(subparsers) -> None:
    download = subparsers.add_parser(
        "download",
        help="download the model weights the configuration needs",
        description="Download every model the configuration names (STORYMAKER_* settings) into the Hugging Face "
        "cache, with progress. Models from GitHub releases (insightface, rembg) are listed with where to put them.",
    )
    download.add_argument("--no-controlnet", action="store_true", help="skip the pose ControlNet")
    download.add_argument("--no-perception", action="store_true",
                          help="skip the face, segmentation and pose-annotator models")
    download.add_argument("--precision", choices=("auto", "fp16", "fp32"), default="auto",
                          help="which weight files to fetch where a repository has both (auto: fp16 when the "
                               "configured device/dtype uses fp16)")
    download.set_defaults(func=run_download)

    doctor = subparsers.add_parser(
        "doctor",
        help="check Python, torch, GPU and which weights are present (no network)",
        description="Report the environment and which model weights are on this machine. Never uses the network.",
    )
    doctor.add_argument("--precision", action="store_true",
                        help="also measure weight drift and seed reproducibility in float16/bfloat16 on the "
                             "tiny pipeline (on the CPU)")
    doctor.set_defaults(func=run_doctor)


def _say(message: str) -> None:
    print(message, flush=True)


def run_download(args: argparse.Namespace, settings: Settings) -> int:
    from ..models import weights

    from ..errors import WeightsNotFoundError

    prefer_fp16 = {"fp16": True, "fp32": False}.get(args.precision)
    try:
        statuses = weights.download_all(
            settings,
            _say,
            with_controlnet=not args.no_controlnet,
            perception=not args.no_perception,
            prefer_fp16=prefer_fp16,
        )
    except WeightsNotFoundError as err:
        if not weights.hub_offline():
            raise
        # The general advice ("run download") is what the person just did: say what stops it.
        raise WeightsNotFoundError(
            "download cannot fetch anything while HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set: "
            "unset it (`unset HF_HUB_OFFLINE`) and run `python -m storymaker download` again.\n" + str(err)
        ) from None
    missing = [st for st in statuses if not st.present]
    if not missing:
        _say("All model weights are present.")
        return 0
    _say("\nStill to do by hand (these come from GitHub releases):")
    for st in missing:
        _say(f"  - {st.spec.describe()}: {st.spec.how_to_provide()}")
    return 1


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def environment_lines(settings: Settings) -> list[str]:
    """Python, torch/CUDA/GPU and package facts, gathered locally."""
    lines = [
        f"Python       {platform.python_version()} ({sys.executable})",
        f"Platform     {platform.platform()}",
    ]
    try:
        import torch
    except ImportError:
        lines.append("torch        not importable: pip install -r requirements.txt")
        return lines
    cuda = torch.cuda.is_available()
    lines.append(f"CUDA         {'available' if cuda else 'not available'} (torch built for CUDA {torch.version.cuda})")
    if cuda:
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            free, total = torch.cuda.mem_get_info(index)
            lines.append(
                f"GPU {index}        {props.name}: {total / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free"
            )
    from ..models.weights import hub_cache_dir, hub_offline, resolve_device, resolve_dtype
    from ..errors import StoryMakerError

    try:
        device = resolve_device(settings)
        lines.append(f"Device       {device} ({resolve_dtype(settings, device)}), settings device={settings.device} "
                     f"dtype={settings.dtype} cpu_offload={settings.cpu_offload}")
    except StoryMakerError as err:
        lines.append(f"Device       problem: {err}")
    lines.append(f"HF cache     {hub_cache_dir()}{'  (offline: HF_HUB_OFFLINE)' if hub_offline() else ''}")
    lines.append("Packages     " + ", ".join(f"{name} {_version(name)}" for name in PACKAGES))
    return lines


def run_doctor(args: argparse.Namespace, settings: Settings) -> int:
    from ..errors import StoryMakerError
    from ..models import weights

    for line in environment_lines(settings):
        _say(line)
    _say("\nModel weights (checked on this machine only):")
    missing = 0
    for spec in weights.model_specs(settings):
        try:
            st = weights.status(spec)
        except StoryMakerError as err:
            _say(f"INVALID  {spec.describe()}: {err}")
            missing += 1
            continue
        _say(st.line())
        missing += not st.present
    if missing:
        _say(f"\n{missing} model(s) missing: `python -m storymaker download` fetches the hub ones.")
    else:
        _say("\nEverything is present.")
    if getattr(args, "precision", False):
        return run_precision_check()
    return 0


def run_precision_check() -> int:
    """Measure weight drift and seed reproducibility in float16 and bfloat16; 0 when none drifted."""
    import torch

    from ..models.precision import DRIFT_CALLS, DRIFT_SCALES, REFERENCE_SCALE, measure_weight_drift

    scales = "/".join(f"{s:g}" for s in DRIFT_SCALES)
    _say(f"\nPrecision (tiny pipeline, CPU): UNet weight drift after {DRIFT_CALLS} renders alternating "
         f"lora_scale {scales}, and whether a render at {REFERENCE_SCALE:g} with the same seed repeats exactly:")
    bad = 0
    for dtype in (torch.float16, torch.bfloat16):
        for fused in (True, False):
            report = measure_weight_drift(dtype, fused=fused)
            _say("  " + report.line())
            bad += not report.ok
    _say("No drift: shared weights and results are stable." if not bad else
         f"{bad} configuration(s) drifted: report this as a bug (python -m storymaker doctor --precision).")
    return 0 if not bad else 1
