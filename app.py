"""StoryMaker Studio in the browser: ``python app.py`` locally, or as a Hugging Face Space.

settings (environment + command line) -> services -> ``storymaker.ui.build_app(services).launch()``.
Host and port follow Gradio's own variables (``GRADIO_SERVER_NAME``, ``GRADIO_SERVER_PORT``) unless
given on the command line; the data folder is ``STORYMAKER_DATA_DIR`` or ``--data-dir``.

On a ZeroGPU Space (``SPACES_ZERO_GPU`` set, or ``STORYMAKER_ZERO_GPU=on``) ``spaces`` is imported
before anything touches CUDA, and the pipeline and the encoders are loaded here, at start-up, before
the app launches (docs/gpu.md, "ZeroGPU and Spaces").
"""

from __future__ import annotations

import argparse
import logging
import sys

from storymaker.config import BACKENDS, Settings
from storymaker.errors import StoryMakerError

logger = logging.getLogger("storymaker.app")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python app.py",
        description=(
            "StoryMaker Studio: register characters, write a story, render consistent panels and "
            "export a comic. Every option can also be set with a STORYMAKER_* environment variable."
        ),
    )
    parser.add_argument(
        "--backend", choices=BACKENDS, default=None,
        help="renderer: auto (StoryMaker when a GPU and the weights are there, else draft), "
        "storymaker, draft or tiny (env STORYMAKER_BACKEND)",
    )
    parser.add_argument(
        "--download", action="store_true",
        help="download missing model weights at start (needs network access and a GPU to be useful)",
    )
    parser.add_argument("--data-dir", default=None, help="where projects and sessions live (env STORYMAKER_DATA_DIR)")
    parser.add_argument("--device", default=None, help="auto, cuda, cuda:1, cpu or mps (env STORYMAKER_DEVICE)")
    parser.add_argument("--max-upload-mb", type=int, default=None, help="largest upload accepted, in MB")
    parser.add_argument(
        "--zero-gpu", choices=("auto", "on", "off"), default=None,
        help="ZeroGPU mode: load the models at start-up and ask spaces.GPU for a duration per call "
        "(auto: on when SPACES_ZERO_GPU is set; env STORYMAKER_ZERO_GPU)",
    )
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    parser.add_argument("--server-name", default=None, help="host to bind (default: GRADIO_SERVER_NAME or 127.0.0.1)")
    parser.add_argument("--server-port", type=int, default=None, help="port (default: GRADIO_SERVER_PORT or 7860)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Environment first, then the command line's explicit values."""
    return Settings.from_env(
        backend=args.backend,
        data_dir=args.data_dir,
        device=args.device,
        max_upload_mb=args.max_upload_mb,
        zero_gpu=args.zero_gpu,
    )


def import_spaces_first(settings: Settings) -> bool:
    """In ZeroGPU mode import ``spaces`` now: it must come before CUDA is initialised."""
    from storymaker.errors import ConfigError
    from storymaker.services.gpu import zero_gpu_enabled

    if not zero_gpu_enabled(settings):
        return False
    try:
        import spaces  # noqa: F401
    except ImportError:
        raise ConfigError("ZeroGPU mode needs the spaces package: pip install spaces (a Space has it).") from None
    return True


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = settings_from_args(args)
        zero_gpu = import_spaces_first(settings)
        from storymaker.services.container import build_services
        from storymaker.ui import build_app

        # ZeroGPU mode: the pipeline and the encoders load here, once, before the app launches.
        services = build_services(settings, backend=settings.backend, download=args.download, zero_gpu=zero_gpu)
        studio = build_app(services, settings=settings)
        studio.launch(share=args.share, server_name=args.server_name, server_port=args.server_port)
    except StoryMakerError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
