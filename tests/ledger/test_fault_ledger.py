"""Every acknowledged event is in the raw lake, once in the finalized metrics and once in search,
whatever goes wrong on the way (issue 12, item 3).

One real local stack (moto server, osmem, ``eventpipe serve``, ``eventpipe runner``) with fault
proxies in front of moto and the search server; each case uses its own app, so its ledger is
counted alone. The table of the cases is printed at the end of the run (tests/ledger/conftest.py)
and written to build/ledger.json.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from chalicelib.stream.codec import decode_record
from chalicelib.lake import layout
from eventpipe.local.faultproxy import FaultProxy, Rule, port_is_closed, search_429
from eventpipe.local.runner import CheckpointStore
from tests.ledger.ledger import CONSUMERS, Ledger, make_events, measure, wait_caught_up

pytestmark = pytest.mark.e2e

#: Every case's events fall in one hour that closed long ago (finalizable at once, within retention).
START_MS = (int(time.time()) // 3600 - 3) * 3_600_000


def post_all(stack, ledger: Ledger, events: list[dict], per_request: int = 100) -> None:
    for i in range(0, len(events), per_request):
        ledger.post(stack.api_url, events[i:i + per_request])


def in_background(target, *args) -> threading.Thread:
    errors: list[BaseException] = []

    def run():
        try:
            target(*args)
        except BaseException as exc:  # re-raised by join_ok
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.errors = errors
    thread.start()
    return thread


def join_ok(thread: threading.Thread, timeout_s: float = 180) -> None:
    thread.join(timeout_s)
    assert not thread.is_alive(), "the posting thread did not finish"
    if thread.errors:
        raise thread.errors[0]


def check(result) -> None:
    assert (result.lost_raw, result.lost_finalized, result.lost_search) == (0, 0, 0), result
    assert (result.double_finalized, result.double_search) == (0, 0), result
    assert result.stored_unacknowledged == 0, result


def test_runner_sigkilled_mid_batch_loses_and_double_counts_nothing(ledger_stack, record_case):
    """SIGKILL the runner at the very request that writes a batch's output (archive staged Parquet,
    rollup partial, search bulk) or its checkpoint, four times; restart it each time."""
    s = ledger_stack
    ledger = Ledger("ledger_kill", s.new_app("ledger_kill"))
    interrupted: list[str] = []
    killed = threading.Event()

    def kill_runner(request) -> None:
        interrupted.append(f"{request.service} {request.operation}")
        os.kill(s.stack.process("runner").pid, signal.SIGKILL)
        killed.set()

    targets = [(s.aws_proxy, dict(service="s3", method="PUT", path=r"/staging/events/")),
               (s.aws_proxy, dict(service="s3", method="PUT",
                                  path=r"/rollups/event_counts/def(=|%3D)[0-9a-f]+/stage(=|%3D)partial/")),
               (s.search_proxy, dict(method="POST", path=r"_bulk")),
               (s.aws_proxy, dict(service="dynamodb", operation="UpdateItem"))]
    for n, (proxy, match) in enumerate(targets):
        killed.clear()
        rule = proxy.add_rule(Rule("hook", limit=1, callback=kill_runner, **match))
        post_all(s, ledger, make_events("kill", 200, START_MS, offset=200 * n))
        assert killed.wait(60), f"the runner never made the request {match}"
        proxy.set_rules([r for r in proxy._rules if r is not rule])
        s.restart_runner(signal.SIGKILL)
    notes = s.settle()
    result = measure("runner SIGKILL mid-batch x4", ledger, s.clients, s.bucket, s.search_url,
                     f"killed at: {', '.join(interrupted)}; {notes}")
    record_case(result)
    check(result)
    assert len(interrupted) == 4


def test_s3_errors_for_a_period_lose_and_double_count_nothing(ledger_stack, record_case):
    """35 % of S3 requests of the API and the runner answered InternalError 500 /
    ServiceUnavailable 503 / SlowDown 503 for 12 s, while events arrive and the finalizer runs."""
    s = ledger_stack
    ledger = Ledger("ledger_s3", s.new_app("ledger_s3"))
    rule = s.aws_proxy.add_rule(Rule("s3_error", service="s3", probability=0.35,
                                     codes=("InternalError", "ServiceUnavailable", "SlowDown"),
                                     until=time.monotonic() + 12))
    poster = in_background(post_all, s, ledger, make_events("s3", 1000, START_MS))
    finalizer, runs = s.finalizer(proxied=True), {"ok": 0, "failed": 0}
    while time.monotonic() < rule.until:
        try:
            s.commit(proxied=True)  # the committer under the same faults: exactly once, whatever fails
            finalizer.run()
            runs["ok"] += 1
        except Exception:  # a failed run changes nothing that the next run does not redo
            runs["failed"] += 1
        time.sleep(1)
    join_ok(poster)
    s.aws_proxy.clear()
    notes = s.settle()
    result = measure("S3 500/503/SlowDown for 12 s", ledger, s.clients, s.bucket, s.search_url,
                     f"{rule.hits} S3 answers injected; finalizer under faults: {runs['ok']} ok, "
                     f"{runs['failed']} failed; {notes}")
    record_case(result)
    check(result)
    assert rule.hits > 0


def test_kinesis_throughput_exceeded_loses_and_double_counts_nothing(ledger_stack, record_case):
    """PutRecords throttled for 10 s (20 % of whole calls, and every record the writer routes to
    shard 1: a hot shard; the API's retries keep a record's partition key, so such a request is
    answered 503 and resent) and 40 % of GetRecords throttled: the ledger holds only what the
    API stored, and the client's resends get every event in."""
    s = ledger_stack
    ledger = Ledger("ledger_kinesis", s.new_app("ledger_kinesis"))
    until = time.monotonic() + 10
    throttled = dict(status=400, code="ProvisionedThroughputExceededException", until=until)
    rules = [Rule("json_error", service="kinesis", operation="PutRecords", probability=0.2, **throttled),
             Rule("put_records_partial", service="kinesis", operation="PutRecords", record_probability=1.0,
                  shard_count=2, throttled_shard=1, until=until),
             Rule("json_error", service="kinesis", operation="GetRecords", probability=0.4, **throttled)]
    s.aws_proxy.set_rules(rules)
    small = in_background(post_all, s, ledger, make_events("kinesis", 600, START_MS), 20)
    post_all(s, ledger, make_events("kinesis", 600, START_MS, offset=10_000), 50)
    join_ok(small)
    while time.monotonic() < until:
        time.sleep(0.5)
    s.aws_proxy.clear()
    notes = s.settle()
    answers = ", ".join(f"{k}: {v}" for k, v in sorted(ledger.answers.items(), key=str))
    result = measure("Kinesis ProvisionedThroughputExceeded (PutRecords, GetRecords) 10 s", ledger, s.clients,
                     s.bucket, s.search_url,
                     f"injected: {rules[0].hits} PutRecords calls, {rules[1].hits} calls with shard-1 records "
                     f"failed, {rules[2].hits} GetRecords; API answers {answers}; {notes}")
    record_case(result)
    check(result)
    assert ledger.answers[503] > 0 and rules[2].hits > 0
    assert len(ledger.acknowledged) == len(ledger.sent)  # the client's retries got everything in


def test_search_429_then_down_then_back_loses_and_double_counts_nothing(ledger_stack, record_case):
    """The search server answers 429 for 6 s, then refuses connections for 6 s, then is back."""
    s = ledger_stack
    ledger = Ledger("ledger_search", s.new_app("ledger_search"))
    rejected = s.search_proxy.add_rule(search_429(for_s=6))
    post_all(s, ledger, make_events("search", 600, START_MS))
    while rejected.until > time.monotonic():
        time.sleep(0.2)
    s.search_proxy.pause()
    assert port_is_closed("127.0.0.1", s.search_proxy.port)
    time.sleep(6)
    s.search_proxy.clear()
    s.search_proxy.resume()
    notes = s.settle()
    result = measure("search 429 6 s, then down 6 s, then back", ledger, s.clients, s.bucket, s.search_url,
                     f"{rejected.hits} search requests answered 429; {notes}")
    record_case(result)
    check(result)
    assert rejected.hits > 0


def _records_of(s, app_id: str) -> dict[str, list[dict]]:
    """shard -> every stream record (in order), each marked when it holds the app's events."""
    kinesis, stream = s.clients.kinesis, s.settings.stream_name
    needle = f'"app_id":"{app_id}"'.encode()
    found = {}
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        records = []
        while iterator:
            response = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            records += [dict(r, mine=needle in decode_record(r["Data"])) for r in response["Records"]]
            if not response["Records"]:
                break
            iterator = response.get("NextShardIterator")
        found[shard["ShardId"]] = records
    return found


def test_duplicate_requests_and_redelivered_batches_count_once(ledger_stack, record_case):
    """The same request posted twice; the app's Kinesis records put on the stream again (new
    sequence numbers); and every consumer's checkpoint rewound so the whole range is delivered twice."""
    s = ledger_stack
    ledger = Ledger("ledger_dup", s.new_app("ledger_dup"))
    events = make_events("dup", 400, START_MS)
    for i in range(0, len(events), 100):
        ledger.post(s.api_url, events[i:i + 100])
        ledger.post(s.api_url, events[i:i + 100])  # a client retry: same ids
    wait_caught_up(s.clients, s.settings)
    by_shard = _records_of(s, ledger.app_id)
    mine = [r for records in by_shard.values() for r in records if r["mine"]]
    s.clients.kinesis.put_records(StreamName=s.settings.stream_name, Records=[
        {"Data": r["Data"], "PartitionKey": r["PartitionKey"]} for r in mine])
    wait_caught_up(s.clients, s.settings)
    s.stack.kill("runner", signal.SIGKILL)
    checkpoints = CheckpointStore(s.clients.dynamodb, s.settings.state_table, _stream_arn(s))
    for shard_id, records in by_shard.items():
        first = next((n for n, r in enumerate(records) if r["mine"]), None)
        if first is None:
            continue
        for consumer in CONSUMERS:
            if first == 0:
                s.clients.dynamodb.delete_item(TableName=s.settings.state_table,
                                               Key=checkpoints._key(consumer, shard_id))
            else:
                checkpoints.put(consumer, shard_id, records[first - 1]["SequenceNumber"])
    s.stack.respawn("runner")
    notes = s.settle()
    result = measure("same request twice; batch re-put; checkpoints rewound", ledger, s.clients, s.bucket,
                     s.search_url, f"{len(mine)} record(s) re-put, then every consumer rewound to before the "
                                   f"app's first record; {notes}")
    record_case(result)
    check(result)
    # The copies were committed, then their (closed) hours compacted: the raw table holds each event once.
    assert result.raw_duplicate_rows == 0


def _stream_arn(s) -> str:
    summary = s.clients.kinesis.describe_stream_summary(StreamName=s.settings.stream_name)
    return summary["StreamDescriptionSummary"]["StreamARN"]


def test_two_finalizers_at_once_lose_and_double_count_nothing(ledger_stack, record_case):
    """Two finalizers run concurrently over the same partitions, again and again, while new
    events keep landing in those partitions (so partials appear between their listings)."""
    s = ledger_stack
    ledger = Ledger("ledger_finalize", s.new_app("ledger_finalize"))
    outcomes = {"runs": 0, "failed": 0}
    stop = threading.Event()
    lock = threading.Lock()

    def finalize_forever(start: threading.Barrier) -> None:
        finalizer = s.finalizer()
        start.wait()
        while not stop.is_set():
            try:
                finalizer.run()
                failed = 0
            except Exception:  # e.g. a partial deleted by the other run between listing and reading
                failed = 1
            with lock:
                outcomes["runs"] += 1
                outcomes["failed"] += failed

    barrier = threading.Barrier(2)
    workers = [threading.Thread(target=finalize_forever, args=(barrier,), daemon=True) for _ in range(2)]
    for worker in workers:
        worker.start()
    for n in range(4):
        post_all(s, ledger, make_events("final", 250, START_MS, offset=250 * n))
        time.sleep(3)
        s.commit()
    wait_caught_up(s.clients, s.settings)
    time.sleep(2)
    stop.set()
    for worker in workers:
        worker.join(60)
    notes = s.settle()
    result = measure("two finalizers at once, repeatedly", ledger, s.clients, s.bucket, s.search_url,
                     f"{outcomes['runs']} concurrent runs ({outcomes['failed']} failed); {notes}")
    record_case(result)
    check(result)
    assert outcomes["runs"] >= 4



def test_two_finalizers_interleaved_at_the_worst_moment_lose_nothing(ledger_stack, record_case):
    """Run A lists the partials and reads the raw table, then stalls before writing its final
    file; new events land; run B writes its (complete) final file and stalls before its done
    marker; A writes its (stale) final and done marker; B writes its done marker, which covers the
    new partials. The app's final file must not be taken as covering events it lacks (the planner
    compares the finals' ETags with the newest marker's and runs the hour again)."""
    s = ledger_stack
    ledger = Ledger("ledger_race", s.new_app("ledger_race"))
    post_all(s, ledger, make_events("race", 200, START_MS))
    wait_caught_up(s.clients, s.settings)
    s.finalize_all()
    post_all(s, ledger, make_events("race", 100, START_MS, offset=200))
    wait_caught_up(s.clients, s.settings)
    s.commit()
    dt, hour = layout.dt_hour(START_MS)
    final_path = rf"rollups/event_counts/def(=|%3D)[0-9a-f]+/stage(=|%3D)final/dt(=|%3D){dt}/hour(=|%3D){hour}/"
    gates = {name: (threading.Event(), threading.Event()) for name in ("A", "B")}  # (reached, release)

    def stall(name):
        def hook(request):
            gates[name][0].set()
            assert gates[name][1].wait(120)
        return hook

    proxies = {"A": FaultProxy(s.stack.moto_url).start(), "B": FaultProxy(s.stack.moto_url).start()}
    proxies["A"].add_rule(Rule("hook", method="PUT", path=final_path + r"app-ledger_race\.parquet", limit=1,
                               callback=stall("A")))
    # B stalls at its done marker (rollups/_units/dt=/hour=/app-<app>/done-<fp>-<at>.json): the last
    # write of a unit, after its final files
    done_path = rf"rollups/_units/dt(=|%3D){dt}/hour(=|%3D){hour}/app-ledger_race/done-"
    proxies["B"].add_rule(Rule("hook", method="PUT", path=done_path, limit=1, callback=stall("B")))
    runs = {name: in_background(s.finalizer(endpoint_url=proxies[name].url).run) for name in ("A", "B")
            if name == "A"}
    try:
        assert gates["A"][0].wait(60), "run A never wrote the final file"
        post_all(s, ledger, make_events("race", 100, START_MS, offset=300))  # new partials while A stalls
        wait_caught_up(s.clients, s.settings)
        s.commit()
        runs["B"] = in_background(s.finalizer(endpoint_url=proxies["B"].url).run)
        assert gates["B"][0].wait(60), "run B never wrote its done marker"
        gates["A"][1].set()
        join_ok(runs["A"])
        gates["B"][1].set()
        join_ok(runs["B"])
    finally:
        for gate in gates.values():
            gate[1].set()
        for proxy in proxies.values():
            proxy.stop()
    notes = s.settle()
    result = measure("two finalizers interleaved adversarially", ledger, s.clients, s.bucket, s.search_url,
                     f"A: stale final after B's; B: done marker last; {notes}")
    record_case(result)
    check(result)


def test_committer_sigkilled_between_each_step_keeps_every_event_once_in_the_raw_table(ledger_stack, record_case):
    """``eventpipe lake commit`` (the commit_events schedule) as a process, SIGKILLed at the request
    of each of its steps: the journal PUT, a data file PUT, Glue UpdateTable (the commit: the proxy
    forwards it after the kill, so it lands with nobody to finish it) and the DeleteObjects of the
    staged files; each time the next run settles what the killed one left. Every acknowledged event
    is then in the raw table exactly once (its hours are closed: compacted), and in the finals."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    s = ledger_stack
    ledger = Ledger("ledger_commit", s.new_app("ledger_commit"))
    env = {**os.environ, "EVENTPIPE_AWS_ENDPOINT_URL": s.aws_proxy.url, "EVENTPIPE_BUCKET": s.settings.bucket,
           "EVENTPIPE_STATE_TABLE": s.settings.state_table, "EVENTPIPE_GLUE_DATABASE": s.settings.glue_database}
    interrupted: list[str] = []
    targets = [dict(service="s3", method="PUT", path=r"/staging/commits/"),
               dict(service="s3", method="PUT", path=r"/tables/events/data/"),
               dict(service="glue", operation="UpdateTable"),
               dict(service="s3", method="POST", path=r"delete")]
    for n, match in enumerate(targets):
        post_all(s, ledger, make_events("commit", 150, START_MS, offset=150 * n))
        wait_caught_up(s.clients, s.settings)
        process: dict = {}

        def kill_committer(request, process=process) -> None:
            interrupted.append(f"{request.service} {request.operation} {request.path.split('?')[0][-40:]}")
            os.kill(process["pid"], signal.SIGKILL)

        rule = s.aws_proxy.add_rule(Rule("hook", limit=1, callback=kill_committer, **match))
        child = subprocess.Popen([sys.executable, "-m", "eventpipe.cli", "lake", "commit"], cwd=str(ROOT), env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        process["pid"] = child.pid
        assert child.wait(120) == -signal.SIGKILL, f"the committer never made the request {match}"
        s.aws_proxy.set_rules([r for r in s.aws_proxy._rules if r is not rule])
    notes = s.settle()
    result = measure("committer SIGKILL between its steps x4", ledger, s.clients, s.bucket, s.search_url,
                     f"killed at: {'; '.join(interrupted)}; {notes}")
    record_case(result)
    check(result)
    assert len(interrupted) == 4
    assert result.raw_duplicate_rows == 0, result  # closed hours are compacted: each event once in the table
