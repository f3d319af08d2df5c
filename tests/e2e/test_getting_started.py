"""The getting-started page is true: every command of docs/getting-started.md runs, exits 0 and shows
what the page says it shows.

The page is the script. Each fenced ``bash`` block is run, in order, with bash from the project folder;
the ``text`` block right under it (its "output") lists lines that must appear in that order in the
command's output (stdout and stderr, as a terminal shows them), each matching a whole line, with
``...`` standing for anything and a line of only ``...`` for any lines. An HTML comment before a block
says how to run it: ``<!-- test: background -->`` (``make run``: started, left running, its output
waited for; stopped with Ctrl-C at the end, which must exit 0) or ``<!-- test: retry -->`` (a read of
an asynchronous result: re-run until its output matches, for a bounded time).

What differs from a reader's run, and nothing else: the stack listens on free ports (the page's 8000,
5000 and 9200 are replaced by them in commands and expected output, and the ``EVENTPIPE_*_PORT``
variables the commands read are set), its data folder is a temporary one, and ``make run`` runs the
recipe of the Makefile's ``run`` target without its prerequisites (the venv install, the npm build).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from eventpipe.local.stack import free_port
from tests.conftest import ROOT

pytestmark = pytest.mark.e2e

PAGE = ROOT / "docs" / "getting-started.md"
#: A background command's expected output must show up within this; a retried read must match within this.
START_TIMEOUT_S = 120.0
RETRY_TIMEOUT_S = 60.0
COMMAND_TIMEOUT_S = 120.0
DEFAULT_PORTS = {"8000": "EVENTPIPE_HTTP_PORT", "5000": "EVENTPIPE_MOTO_PORT", "9200": "EVENTPIPE_SEARCH_PORT"}

_BLOCK = re.compile(r"(?:<!--\s*test:\s*(?P<mode>\w+)\s*-->\s*\n)?```bash[^\n]*\n(?P<code>.*?)\n```"
                    r"(?:\s*\n```text[^\n]*\n(?P<output>.*?)\n```)?", re.S)


@dataclass
class Step:
    code: str
    expected: list[str]
    mode: str  # "run", "background" or "retry"


def page_steps(text: str) -> list[Step]:
    steps = []
    for m in _BLOCK.finditer(text):
        expected = m.group("output").split("\n") if m.group("output") is not None else []
        steps.append(Step(m.group("code"), expected, m.group("mode") or "run"))
    return steps


def line_pattern(line: str) -> re.Pattern:
    return re.compile(".*".join(re.escape(part) for part in line.rstrip().split("...")))


def missing_lines(expected: list[str], output: str) -> list[str]:
    """The expected lines not found, in order, among the output's lines ("..." matches anything)."""
    lines = [line.rstrip() for line in output.replace("\r", "\n").split("\n")]
    at = 0
    for position, want in enumerate(expected):
        if want.strip() in ("", "..."):
            continue
        pattern = line_pattern(want)
        while at < len(lines) and not pattern.fullmatch(lines[at]):
            at += 1
        if at == len(lines):
            return expected[position:]
        at += 1
    return []


def make_run_recipe() -> list[str]:
    """The command of the Makefile's ``run`` target, with $(BIN) the venv this test runs in."""
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^run:[^\n]*\n\t([^\n]+)", makefile, re.M)
    assert recipe, "the Makefile has no run target"
    return shlex.split(recipe.group(1).replace("$(BIN)", str(Path(sys.executable).parent)))


def test_the_page_parses_into_its_steps():
    """The parser sees every bash block of the page (none silently skipped) and the markers."""
    text = PAGE.read_text()
    steps = page_steps(text)
    assert len(steps) == text.count("```bash") >= 6
    assert [s.code for s in steps if s.mode == "background"] == ["make run"]
    assert all(s.expected for s in steps), "every command shows its output"
    assert missing_lines(["a ... c", "...", "e"], "x\na b c\nd\ne\n") == []
    assert missing_lines(["e", "a ... c"], "a b c\ne\n") == ["a ... c"]


def test_every_command_of_the_getting_started_page_runs_and_shows_what_the_page_says(tmp_path):
    """Run the page, block by block, against the local stack that `make run` starts."""
    ports = {default: str(free_port()) for default in DEFAULT_PORTS}
    env = {**os.environ, "EVENTPIPE_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.update({name: ports[default] for default, name in DEFAULT_PORTS.items()})
    for name in ("EVENTPIPE_VERBOSE", "OPENSEARCH_URL", "EVENTPIPE_AWS_ENDPOINT_URL", "EVENTPIPE_API_KEY"):
        env.pop(name, None)

    def localize(text: str) -> str:
        for default, port in ports.items():
            text = re.sub(rf"(localhost|127\.0\.0\.1):{default}\b", rf"\g<1>:{port}", text)
        return text

    steps = page_steps(PAGE.read_text())
    background: subprocess.Popen | None = None
    log = tmp_path / "make-run.log"
    try:
        for step in steps:
            expected = [localize(line) for line in step.expected]
            code = localize(step.code)
            if step.mode == "background":
                assert code == "make run", "only `make run` runs in the background"
                background = subprocess.Popen(make_run_recipe(), cwd=ROOT, env=env, text=True,
                                              stdout=log.open("w"), stderr=subprocess.STDOUT,
                                              start_new_session=True)
                deadline = time.monotonic() + START_TIMEOUT_S
                while missing_lines(expected, log.read_text()):
                    assert background.poll() is None, f"make run exited {background.returncode}:\n{log.read_text()}"
                    assert time.monotonic() < deadline, (f"make run did not show {missing_lines(expected, log.read_text())}"
                                                         f" within {START_TIMEOUT_S:.0f}s:\n{log.read_text()[-4000:]}")
                    time.sleep(0.5)
                continue
            deadline = time.monotonic() + (RETRY_TIMEOUT_S if step.mode == "retry" else 0)
            while True:
                done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", code], cwd=ROOT, env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=COMMAND_TIMEOUT_S)
                missing = missing_lines(expected, done.stdout)
                if done.returncode == 0 and not missing:
                    break
                if time.monotonic() >= deadline:
                    pytest.fail(f"{step.code!r} exited {done.returncode}; not shown: {missing}\noutput:\n{done.stdout}")
                time.sleep(1.0)
    finally:
        if background is not None and background.poll() is None:
            os.killpg(background.pid, signal.SIGINT)  # Ctrl-C
            try:
                code = background.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(background.pid, signal.SIGKILL)
                code = background.wait()
    assert background is not None
    assert code == 0, f"Ctrl-C: make run exited {code}:\n{log.read_text()[-4000:]}"
