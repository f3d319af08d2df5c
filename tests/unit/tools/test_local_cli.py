"""The local stack's command line: what `eventpipe run --help` tells about the environment."""

from __future__ import annotations

from eventpipe.cli import build_parser
from eventpipe.local.stack import StackConfig


class Recording(dict):
    """An empty environment that remembers every name it was asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: set[str] = set()

    def get(self, name, default=None):
        self.asked.add(name)
        return default


def run_help() -> str:
    parser = build_parser()
    run = parser._subparsers._group_actions[0].choices["run"]
    return run.format_help()


def test_run_help_lists_every_environment_variable_the_stack_reads():
    """Each variable StackConfig.from_env reads (ports, search URL, shards, demo app) is named in --help."""
    env = Recording()
    StackConfig.from_env(env)
    help_text = run_help()
    assert {"EVENTPIPE_SEARCH_PORT", "EVENTPIPE_HTTP_PORT", "EVENTPIPE_MOTO_PORT"} <= env.asked
    assert [name for name in sorted(env.asked) if name not in help_text] == []
    assert "EVENTPIPE_VERBOSE" in help_text and "EVENTPIPE_DATA_DIR" in help_text
