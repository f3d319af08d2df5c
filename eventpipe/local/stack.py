"""The local stack supervisor: moto server, bootstrap, HTTP API, runner.

Every child runs in its own process (the GIL would otherwise serialise moto,
the API and the handlers) with its output prefixed; Ctrl-C or SIGTERM stops
every process the stack started, and children die with the supervisor
(PR_SET_PDEATHSIG) even if it is killed.

With a data folder (``StackConfig.data_dir``; ``eventpipe/local/persistence.py``)
the stack keeps its data: start = moto, search -> restore -> bootstrap -> API ->
runner -> periodic saves, and search rebuilt in the background by replay of the raw
archive (the indices are not saved; the API answers meanwhile, searches miss the
older events until it is done); stop = replay stopped -> API first -> drain the
stream -> runner -> save -> search, moto.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Mapping

from chalicelib.runtime.clients import Clients
from chalicelib.runtime.settings import Settings
from eventpipe.local.bootstrap import bootstrap

HOST = "127.0.0.1"
#: The embedded search server (osmem-server) serves one request at a time, and a bulk request costs more
#: than its size (5 MB, ~16k events: 18-26 s; 0.3 MB: 0.4-0.9 s): with the indexer's 5 MB bulks, a search
#: queued behind them timed out (503 "ConnectionTimeout" for ~30 s after a large send). Small bulks keep
#: each wait short (and index faster); a search may wait for the bulks ahead of it rather than give up.
LOCAL_SEARCH_ENV = {"EVENTPIPE_SEARCH_BULK_BYTES": str(512 * 1024), "EVENTPIPE_SEARCH_TIMEOUT_S": "30"}
#: The consumer a stop does not wait for (search is rebuilt from the archive at each start with data).
SEARCH_INDEXER = "index_events"
#: Seconds between the progress lines of the search rebuild.
PROGRESS_EVERY_S = 5.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child before exec
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def wait_http(url: str, timeout_s: float = 30.0, accept=(200, 503)) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status in accept:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code in accept:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout_s:.0f}s")
        time.sleep(0.1)


@dataclass
class StackConfig:
    moto_port: int = 5000
    http_port: int = 8000
    #: The embedded OpenSearch-compatible server (osmem); unused when OPENSEARCH_URL is set.
    search_port: int = 9200
    opensearch_url: str | None = None
    shards: int = 2
    demo_app: str = "demo"
    demo_key: str = "demo-key"
    project_dir: str = field(default_factory=os.getcwd)
    extra_env: dict[str, str] = field(default_factory=dict)
    quiet: bool = False
    #: Keep S3 and DynamoDB across restarts in this folder (None: nothing is kept, as moto alone).
    data_dir: str | None = None
    #: Start empty: forget what the data folder holds.
    fresh: bool = False
    #: Seconds between periodic saves (0: only when stopping).
    save_every_s: float = 30.0
    #: How long a stop waits for the consumers to reach the tip of the stream.
    drain_timeout_s: float = 60.0
    #: Where the API and the runner send their AWS and search calls (default: moto and the search
    #: server themselves); e.g. a fault proxy (eventpipe/local/faultproxy.py). Bootstrap goes direct.
    child_aws_endpoint_url: str | None = None
    child_opensearch_url: str | None = None
    #: Start the runner (the consumers and schedules); an API-only stack (contract fuzzing) leaves it out.
    with_runner: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "StackConfig":
        """The settings of ``eventpipe run`` from the environment (listed by its --help: environment.py)."""
        env = os.environ if env is None else env
        return cls(moto_port=int(env.get("EVENTPIPE_MOTO_PORT", 5000)),
                   http_port=int(env.get("EVENTPIPE_HTTP_PORT", 8000)),
                   search_port=int(env.get("EVENTPIPE_SEARCH_PORT", 9200)),
                   opensearch_url=env.get("OPENSEARCH_URL") or None,
                   shards=int(env.get("EVENTPIPE_SHARDS", 2)),
                   demo_app=env.get("EVENTPIPE_DEMO_APP", "demo"),
                   demo_key=env.get("EVENTPIPE_DEMO_KEY", "demo-key"))


class Stack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.children: list[tuple[str, subprocess.Popen]] = []
        self.moto_url = f"http://{HOST}:{config.moto_port}"
        self.api_url = f"http://{HOST}:{config.http_port}"
        # moto accepts any credentials; set dummy ones so nothing real is ever used.
        for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                            ("AWS_DEFAULT_REGION", "us-east-1")):
            os.environ.setdefault(name, value)
        self.external_search = config.opensearch_url is not None
        self.search_url = config.opensearch_url or f"http://{HOST}:{config.search_port}"
        self.env = {
            **os.environ,
            "EVENTPIPE_AWS_ENDPOINT_URL": self.moto_url,
            "OPENSEARCH_URL": self.search_url,
            "PYTHONUNBUFFERED": "1",
            **config.extra_env,
        }
        if not self.external_search:
            for name, value in LOCAL_SEARCH_ENV.items():  # the user's own values win
                self.env.setdefault(name, value)
        self.settings = Settings.from_env(self.env)
        self.data = None  # the DataFolder once moto is up (with data_dir)
        self.restored = None  # RestoreReport of this start, if anything was restored
        self.replayed = None  # ReplaySummary of the search rebuild, once it is complete
        self.search_progress = None  # ReplaySummary of the rebuild so far (updated as it goes)
        self._replay: threading.Thread | None = None
        self._stopping = threading.Event()  # set: the background replay stops
        self._saves = threading.Event()  # set: periodic saves stop
        self._save_lock = threading.Lock()
        if config.child_aws_endpoint_url:
            self.env["EVENTPIPE_AWS_ENDPOINT_URL"] = config.child_aws_endpoint_url
        if config.child_opensearch_url:
            self.env["OPENSEARCH_URL"] = config.child_opensearch_url
        self._commands: dict[str, list[str]] = {}

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        process = subprocess.Popen(args, cwd=self.config.project_dir, env=self.env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   preexec_fn=_die_with_parent, start_new_session=True)
        self.children.append((name, process))
        self._commands[name] = args
        threading.Thread(target=self._pump, args=(name, process), daemon=True).start()
        return process

    def _pump(self, name: str, process: subprocess.Popen) -> None:
        for raw in process.stdout:  # moto's access log is off unless EVENTPIPE_VERBOSE=1 (moto_server.py)
            if not self.config.quiet:
                sys.stdout.write(f"[{name:6}] {raw.decode(errors='replace')}")
                sys.stdout.flush()

    def start(self) -> None:
        python = sys.executable
        # moto with time-ordered Kinesis sequence numbers (a restarted stream never reuses one)
        self._spawn("moto", [python, "-m", "eventpipe.local.moto_server", "-H", HOST, "-p", str(self.config.moto_port)])
        if not self.external_search:
            from osmem_server import resolve_binary  # in-memory OpenSearch-compatible server, no JVM
            self._spawn("search", [resolve_binary(), "-addr", f"{HOST}:{self.config.search_port}",
                                   "-no-stdin-watch", "-parent-pid", str(os.getpid())])
        wait_http(f"{self.moto_url}/moto-api/", accept=(200,))
        wait_http(self.search_url, accept=(200,))
        clients = Clients(self.settings)
        self._restore(clients)
        report = bootstrap(clients, self.config.shards, self.config.demo_app, self.config.demo_key)
        self._say("bootstrap: " + "; ".join(report))
        # Finalization goes through the queue (the runner plays SQS -> the finalize_worker function).
        queue_url = clients.sqs.get_queue_url(QueueName=self.settings.finalize_queue)["QueueUrl"]
        self.env.setdefault("EVENTPIPE_FINALIZE_QUEUE_URL", queue_url)
        self._spawn("api", [python, "-m", "eventpipe.cli", "serve", "--host", HOST,
                            "--port", str(self.config.http_port)])
        wait_http(f"{self.api_url}/v1/health")
        if self.config.with_runner:
            self._spawn("runner", [python, "-m", "eventpipe.cli", "runner"])
        if self.restored is not None:
            self._say("search: rebuilding the indices from the archive in the background; the API answers "
                      "meanwhile (searches miss the older events until it is done)")
            self._replay = threading.Thread(target=self._rebuild_search, daemon=True, name="search-replay")
            self._replay.start()
        if self.data is not None and self.config.save_every_s > 0:
            threading.Thread(target=self._save_periodically, daemon=True, name="saves").start()

    # ------------------------------------------------------------ persistence
    def _restore(self, clients: Clients) -> None:
        """Restore the data folder into the empty moto (before bootstrap, before the API opens)."""
        if not self.config.data_dir:
            return
        from eventpipe.local.persistence import DataFolder

        s = self.settings
        data = DataFolder(self.config.data_dir, clients.s3, clients.dynamodb, s.state_table, s.apps_table)
        if self.config.fresh:
            data.clear()
            self._say(f"data: {data.path}: --fresh, starting empty")
        elif (snapshot := data.load()) is not None:
            self.restored = data.restore(snapshot, s.region)
            self._say(f"data: {data.path}: {self.restored.describe()}")
        self.data = data  # from here on a stop saves (never before: it would save an empty moto over the data)

    def _rebuild_search(self) -> None:
        """The search indices are not saved: rebuild them from the restored raw archive (eventpipe replay),
        in the background, with a progress line every PROGRESS_EVERY_S."""
        from chalicelib.runtime.container import Container, clock_ms
        from eventpipe.ops.replay import replayer_for

        said = [time.monotonic()]

        def report(summary) -> None:
            self.search_progress = summary
            if time.monotonic() - said[0] >= PROGRESS_EVERY_S:
                said[0] = time.monotonic()
                self._say(f"search: catching up: {summary.hours_replayed} of {summary.hours_to_replay} archived "
                          f"hour(s), {summary.events} event(s) indexed in {summary.seconds:.0f}s")

        now = clock_ms()
        retention_ms = self.settings.search_retention_days * 86_400_000
        try:
            replayed = replayer_for(Container(self.settings)).run(now - retention_ms, now + 86_400_000, report=report,
                                                                  stop=self._stopping.is_set)
        except Exception as exc:  # noqa: BLE001 - the lake is restored; search can be replayed by hand
            self._say(f"search: rebuild by replay failed ({type(exc).__name__}: {exc}); "
                      "run `eventpipe replay --from ... --to ...` once the search server is up")
            return
        self.search_progress = replayed
        if replayed.stopped:
            self._say(f"search: rebuild stopped after {replayed.events} event(s) (the next start replays again)")
            return
        self.replayed = replayed
        self._say(f"search: caught up: {replayed.describe()}")

    def save(self) -> object | None:
        """Save S3 and DynamoDB into the data folder now (None without one)."""
        if self.data is None:
            return None
        with self._save_lock:
            return self.data.save()

    def _save_periodically(self) -> None:
        while not self._saves.wait(self.config.save_every_s):
            try:
                self.save()
            except Exception as exc:  # noqa: BLE001 - the next save tries again; the previous one is intact
                self._say(f"data: periodic save failed ({type(exc).__name__}: {exc})")

    def _stop_child(self, name: str) -> None:
        for child, process in self.children:
            if child == name and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

    def _drain_and_save(self) -> None:
        """Ctrl-C with a data folder: API first (no new events), drain the stream, runner, save."""
        from chalicelib.runtime.pipeline_config import load_pipeline_config
        from eventpipe.local.persistence import drain

        self._saves.set()
        self._stop_child("api")
        if any(name == "runner" and p.poll() is None for name, p in self.children):
            # Not the search indexer: the next start rebuilds search from the archive (after a large send it
            # is the slow one, and waiting for it made Ctrl-C take the whole drain timeout).
            consumers = [c.name for c in load_pipeline_config(self.settings.stage).consumers
                         if c.name != SEARCH_INDEXER]
            consumers += ["tap"] if self.settings.tap_file else []
            clients = Clients(self.settings)
            report = drain(clients.kinesis, clients.dynamodb, self.settings.state_table, self.settings.stream_name,
                           consumers, timeout_s=self.config.drain_timeout_s)
            self._say(report.describe())
        self._stop_child("runner")
        report = self.save()
        self._say(f"data: {self.data.path}: {report.describe()}")

    def _say(self, text: str) -> None:
        if not self.config.quiet:
            print(f"[stack ] {text}", flush=True)

    def check_children(self) -> str | None:
        for name, process in self.children:
            if process.poll() is not None:
                return f"{name} exited with code {process.returncode}"
        return None

    def process(self, name: str) -> subprocess.Popen:
        """The running child called ``name`` (moto, search, api, runner)."""
        return next(p for n, p in reversed(self.children) if n == name)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal one child and wait for it to exit (fault tests: SIGKILL the runner mid-batch)."""
        process = self.process(name)
        process.send_signal(sig)
        process.wait(timeout=30)
        self.children = [(n, p) for n, p in self.children if p is not process]

    def respawn(self, name: str) -> subprocess.Popen:
        """Start a child again with the command it was first started with."""
        return self._spawn(name, self._commands[name])

    def stop(self) -> None:
        self._stopping.set()
        if self._replay is not None:  # it stops before its next indexer call (a few seconds at most)
            self._replay.join(timeout=60)
        if self.data is not None and self.children:
            try:
                self._drain_and_save()
            except Exception as exc:  # noqa: BLE001 - the previous save stays; stop everything anyway
                self._say(f"data: saving failed ({type(exc).__name__}: {exc}); the previous save is kept")
            self.data = None
        for _, process in reversed(self.children):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for _, process in reversed(self.children):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.children.clear()

    def __enter__(self) -> "Stack":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
