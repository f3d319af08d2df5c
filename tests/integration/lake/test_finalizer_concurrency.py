"""Two finalization units of one (app, hour) at once, the older snapshot's writing last."""

from __future__ import annotations

import threading

from chalicelib.lake.finalizer import Finalizer
from chalicelib.stream import codec
from tests.conftest import kinesis_record
from tests.factories.lake import T0, canonical_lines, lambda_batches, truth_event_counts
from tests.integration.lake.test_lake_processing import HOUR, assert_counts_match, lake  # noqa: F401 (fixture)


class StallingS3:
    """An S3 client whose first put_object of a key containing ``part`` ending with ``suffix`` waits for
    ``release`` (a unit writes its final files, ``app-<app>.parquet``, then its manifest and done marker)."""

    def __init__(self, client, suffix: str, part: str = "/event_counts/") -> None:
        self._client, self._suffix, self._part = client, suffix, part
        self.reached, self.release, self._stalled = threading.Event(), threading.Event(), False

    def put_object(self, **kwargs):
        if not self._stalled and kwargs["Key"].endswith(self._suffix) and self._part in kwargs["Key"]:
            self._stalled = True
            self.reached.set()
            assert self.release.wait(30)
        return self._client.put_object(**kwargs)

    def __getattr__(self, name):
        return getattr(self._client, name)


def test_an_older_units_final_written_after_a_newer_done_marker_makes_the_hour_due_again(lake):
    """Unit A reads the raw table, then writes its final file after unit B (a newer snapshot) wrote
    its own; B's done marker, written last, records B's files: the planner sees the ETag differ and
    runs the (app, hour) again, so the finals end exact (0 lost, 0 double)."""
    lines = canonical_lines(300, seed=41, duration_ms=30 * 60_000)
    first, later = lines[:250], lines[250:]
    for batch in lambda_batches(first, seed=42):
        lake.deliver(batch)
    lake.clock.now_ms = T0 + 3 * HOUR
    a_s3, b_s3 = StallingS3(lake.s3, ".parquet"), StallingS3(lake.s3, ".json", "/done-")
    lake.committer.run()
    run_a = threading.Thread(target=Finalizer(a_s3, lake.bucket, lake.state, lake.metrics, lake.clock, 0,
                                              raw=lake.raw).run)
    run_b = threading.Thread(target=Finalizer(b_s3, lake.bucket, lake.state, lake.metrics, lake.clock, 0,
                                              raw=lake.raw).run)
    run_a.start()
    assert a_s3.reached.wait(30)
    lake.deliver([kinesis_record(codec.pack(later)[0].data, "shardId-000000000001", 10_000)])
    lake.committer.run()
    run_b.start()
    assert b_s3.reached.wait(30)
    a_s3.release.set()
    run_a.join(30)
    b_s3.release.set()
    run_b.join(30)
    finalizer = Finalizer(lake.s3, lake.bucket, lake.state, lake.metrics, lake.clock, grace_ms=0, raw=lake.raw)
    assert "finalized" in {r.action for r in finalizer.run() if r.metric == "event_counts"}
    finalizer.run()  # cleanup of the covered partials
    assert_counts_match(lake.event_counts(), truth_event_counts(lines))


def test_queued_units_are_not_sent_again_while_a_worker_may_hold_them(lake):
    """Rule: the planner sends a due (app, hour) once, not again at each run while its units are in
    flight (SQS brings a failed one back itself); after RESEND_MS without a done marker it sends again;
    once the worker finished, nothing is due."""
    from chalicelib.lake.finalizer import RESEND_MS

    for batch in lambda_batches(canonical_lines(200, seed=51, duration_ms=30 * 60_000), seed=52):
        lake.deliver(batch)
    lake.committer.run()
    lake.clock.now_ms = T0 + 3 * HOUR
    sent: list = []
    planner = Finalizer(lake.s3, lake.bucket, lake.state, lake.metrics, lake.clock, 0, raw=lake.raw,
                        dispatch=sent.extend)
    assert {r.action for r in planner.run()} == {"queued"}
    first = list(sent)
    assert first and planner.run() == [] and sent == first
    lake.clock.now_ms += RESEND_MS
    planner.run()
    assert sent == first + first  # no done marker after the timeout: sent again
    for unit in first:
        planner.worker.run_unit(unit)
    lake.clock.now_ms += RESEND_MS
    assert [r for r in planner.run() if r.action == "queued"] == []
