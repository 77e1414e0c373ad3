"""StoryMaker Studio in the browser: ``python app.py`` locally, or as a Hugging Face Space.

settings (environment + command line) -> services -> ``storymaker.ui.build_app(services).launch()``.
Host and port follow Gradio's own variables (``GRADIO_SERVER_NAME``, ``GRADIO_SERVER_PORT``) unless
given on the command line; the data folder is ``STORYMAKER_DATA_DIR`` or ``--data-dir``.
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
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = settings_from_args(args)
        from storymaker.services.container import build_services
        from storymaker.ui import build_app

        services = build_services(settings, backend=settings.backend, download=args.download)
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
