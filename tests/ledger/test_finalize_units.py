"""Ledger cases of finalization units (the finalize-units queue of the local stack): a unit
delivered twice, units of one (app, hour) at once, the worker SIGKILLed mid-unit, a poison unit
to the dead-letter queue and redriven. Each: 0 events lost, 0 counted twice in the finals.

Units go through the stack's queue and its runner (SQS -> finalize_worker) unless a case runs
them in-process on purpose; finals are measured without any in-process finalization after."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from chalicelib.lake.unit_queue import UnitQueue
from eventpipe.local.faultproxy import Rule
from tests.conftest import ROOT
from tests.ledger.ledger import Ledger, make_events, measure, wait_caught_up
from tests.ledger.test_fault_ledger import START_MS, check, post_all

pytestmark = pytest.mark.e2e


def queue(s) -> UnitQueue:
    sqs = s.clients.sqs
    return UnitQueue(sqs, sqs.get_queue_url(QueueName=s.settings.finalize_queue)["QueueUrl"])


def depth(s, name: str) -> int:
    sqs = s.clients.sqs
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def wait_drained(s, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while depth(s, s.settings.finalize_queue) > 0:
        assert time.monotonic() < deadline, "the finalize-units queue did not drain"
        time.sleep(1)


def plan(s, app_id: str, rows_per_unit: int | None = None):
    """The due units of the app (the planner, sending nothing)."""
    sent = []
    finalizer = s.finalizer()
    if rows_per_unit:
        finalizer.planner._rows_per_unit = rows_per_unit
    finalizer._dispatch = sent.extend
    finalizer.run()
    return [u for u in sent if u.app_id == app_id]


def ready(s, name: str, count: int = 300) -> Ledger:
    ledger = Ledger(name, s.new_app(name))
    post_all(s, ledger, make_events(name, count, START_MS))
    wait_caught_up(s.clients, s.settings)
    s.commit()
    return ledger


def test_a_unit_delivered_twice_counts_once(ledger_stack, record_case):
    """Every unit of the app sent to the queue twice (SQS at-least-once): the runner runs each twice."""
    s = ledger_stack
    ledger = ready(s, "units_twice")
    units = plan(s, ledger.app_id, rows_per_unit=100)
    assert len(units) > 1
    queue(s).send(units + units)
    wait_drained(s)
    result = measure("finalize unit delivered twice", ledger, s.clients, s.bucket, s.search_url,
                     f"{len(units)} unit(s) x 2 through the queue")
    record_case(result)
    check(result)
    assert plan(s, ledger.app_id, rows_per_unit=100) == []  # nothing left due


def test_units_of_one_app_hour_at_once_count_once(ledger_stack, record_case):
    """The same slices run by two workers at the same moment (and by the queue's runner)."""
    s = ledger_stack
    ledger = ready(s, "units_concurrent")
    units = plan(s, ledger.app_id, rows_per_unit=100)
    worker = s.finalizer().worker
    start = threading.Barrier(2)

    def run_all():
        start.wait()
        for unit in units:
            worker.run_unit(unit)

    threads = [threading.Thread(target=run_all) for _ in range(2)]
    queue(s).send(units)
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    wait_drained(s)
    for _ in range(3):  # a unit that read an older snapshot and wrote last is found and redone
        again = plan(s, ledger.app_id, rows_per_unit=100)
        for unit in again:
            worker.run_unit(unit)
    result = measure("finalize units at once", ledger, s.clients, s.bucket, s.search_url,
                     f"{len(units)} slice(s) by 2 threads and the queue at once")
    record_case(result)
    check(result)


def test_worker_sigkilled_mid_unit_then_the_unit_comes_back(ledger_stack, record_case):
    """The runner (the worker) is SIGKILLed while a unit's final file is being written; the
    message comes back after its visibility timeout to the restarted runner."""
    s = ledger_stack
    ledger = ready(s, "units_kill")
    units = plan(s, ledger.app_id)
    reached = threading.Event()

    def stall(request) -> None:  # the first final PUT hangs (the proxy holds it) while the runner dies
        reached.set()
        time.sleep(30)

    rule = s.aws_proxy.add_rule(Rule("hook", service="s3", method="PUT", path="stage%3Dfinal|stage=final",
                                     limit=1, callback=stall))
    queue(s).send(units)
    assert reached.wait(120), "no unit started writing"
    s.restart_runner(signal.SIGKILL)
    s.aws_proxy.clear()
    wait_drained(s, 300)
    result = measure("finalize worker SIGKILL mid-unit", ledger, s.clients, s.bucket, s.search_url,
                     f"{len(units)} unit(s); runner killed during a final PUT ({rule.hits} delayed)")
    record_case(result)
    check(result)


def test_a_poison_unit_goes_to_the_dead_letter_queue_and_redrive_finishes_it(ledger_stack, record_case):
    """Every final PUT fails while a unit is received maxReceiveCount times: SQS moves it to the
    dead-letter queue; after the fault, ``eventpipe redrive --consumer finalize_worker`` sends it
    back and the runner finalizes it."""
    s = ledger_stack
    ledger = ready(s, "units_poison")
    units = plan(s, ledger.app_id)
    dlq = f"{s.settings.finalize_queue}-dlq"
    rule = s.aws_proxy.add_rule(Rule("s3_error", service="s3", method="PUT", path="stage%3Dfinal|stage=final",
                                     code="InternalError"))
    queue(s).send(units)
    deadline = time.monotonic() + 240
    while depth(s, dlq) < len(units):
        assert time.monotonic() < deadline, "the unit never reached the dead-letter queue"
        time.sleep(2)
    s.aws_proxy.clear()
    env = {**os.environ, "EVENTPIPE_AWS_ENDPOINT_URL": s.stack.moto_url, "OPENSEARCH_URL": s.search_url}
    done = subprocess.run([sys.executable, "-m", "eventpipe.cli", "redrive", "--consumer", "finalize_worker"],
                          cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert depth(s, dlq) == 0
    wait_drained(s)
    result = measure("finalize unit poisoned, DLQ, redriven", ledger, s.clients, s.bucket, s.search_url,
                     f"{rule.hits} final PUT(s) refused; {done.stdout.count('replayed')} redriven")
    record_case(result)
    check(result)
