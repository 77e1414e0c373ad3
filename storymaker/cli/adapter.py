"""`python -m storymaker adapter ...`: check and convert StoryMaker adapter checkpoints.

- ``adapter check PATH``: compare every key and shape with the adapter for SDXL (computed on the
  meta device) or for ``--unet-config``; exit 0 with a one-line summary, exit 2 listing every problem.
- ``adapter convert PATH OUT.safetensors``: rewrite a checkpoint as safetensors (flat keys).

Checkpoints are read with ``torch.load(weights_only=True)``: code in a pickle is never run.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "adapter", help="check or convert a StoryMaker adapter checkpoint (mask.bin)",
        description="Check or convert a StoryMaker adapter checkpoint without running code from it.",
    )
    commands = parser.add_subparsers(dest="adapter_command", metavar="ACTION")
    commands.required = True

    check = commands.add_parser(
        "check", help="compare a checkpoint's keys and shapes with the adapter the app builds",
    )
    check.add_argument("path", type=Path, help="mask.bin, .pt or .safetensors")
    check.add_argument(
        "--unet-config", type=Path, default=None,
        help="UNet config.json, UNet folder or diffusers SDXL folder (default: SDXL base 1.0)",
    )
    check.add_argument(
        "--clip-dim", type=int, default=None,
        help="hidden size of the image encoder (default: 1280, CLIP ViT-H/14)",
    )
    check.set_defaults(func=run_check)

    convert = commands.add_parser("convert", help="write a checkpoint as .safetensors (flat keys)")
    convert.add_argument("path", type=Path, help="mask.bin, .pt or .safetensors")
    convert.add_argument("out", type=Path, help="output file ending in .safetensors")
    convert.set_defaults(func=run_convert)


def _summary_text(path: Path, summary: dict) -> str:
    return (
        f"{summary['keys']} keys, {summary['parameters']:,} parameters, "
        f"{summary['processors']} attention processors ({'/'.join(summary['dtypes']) or 'no tensors'})"
    )


def run_check(args: argparse.Namespace, settings) -> int:
    from ..errors import CheckpointError
    from ..models import adapter as adapter_mod
    from ..models import adapter_checkpoint as checkpoint_mod

    state = checkpoint_mod.load_checkpoint_state(args.path)
    clip_dim = args.clip_dim or checkpoint_mod.SDXL_CLIP_DIM
    if args.unet_config is None:
        layout = (adapter_mod.sdxl_layout() if clip_dim == checkpoint_mod.SDXL_CLIP_DIM
                  else adapter_mod.expected_layout(checkpoint_mod.SDXL_UNET_CONFIG, clip_dim))
        target = "SDXL"
    else:
        layout = adapter_mod.expected_layout(adapter_mod.read_unet_config(args.unet_config), clip_dim)
        target = str(args.unet_config)
    problems = checkpoint_mod.check_checkpoint(state, layout)
    if problems:
        raise CheckpointError(checkpoint_mod.describe_problems(str(args.path), problems, limit=None))
    summary = checkpoint_mod.checkpoint_summary(state)
    print(f"OK {args.path}: StoryMaker adapter for {target} (image encoder width {clip_dim}): "
          + _summary_text(args.path, summary))
    return 0


def run_convert(args: argparse.Namespace, settings) -> int:
    from ..models import adapter_checkpoint as checkpoint_mod

    checkpoint_mod.convert_checkpoint(args.path, args.out)
    summary = checkpoint_mod.checkpoint_summary(checkpoint_mod.load_checkpoint_state(args.out))
    print(f"wrote {args.out}: " + _summary_text(args.out, summary))
    return 0
