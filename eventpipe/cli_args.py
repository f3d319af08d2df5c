"""Argument parsing and settings shared by the ``eventpipe`` subcommands."""

from __future__ import annotations

import argparse
import os

from chalicelib.runtime.settings import Settings


def _aws_settings(args) -> Settings:
    """Settings for commands that talk to AWS: the local stack unless --aws."""
    if not args.aws and not os.environ.get("EVENTPIPE_AWS_ENDPOINT_URL"):
        os.environ["EVENTPIPE_AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{os.environ.get('EVENTPIPE_MOTO_PORT', '5000')}"
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return Settings.from_env()


def _parse_duration_ms(text: str) -> int:
    from chalicelib.processing.errors import DurationError
    from chalicelib.processing.windows import parse_duration
    try:
        return parse_duration(text)
    except DurationError:
        raise argparse.ArgumentTypeError(f"duration {text!r}: use a number with s, m, h or d (e.g. 1h)") from None


def _parse_instant_ms(text: str) -> int:
    from chalicelib.stream.instants import InvalidInstant, parse_instant
    try:
        return parse_instant(text, "--start")
    except InvalidInstant as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
