"""The finalize-units queue (planner -> finalize_worker) and its dead-letter queue.

A unit received ``max_receive_count`` times without success moves to the dead-letter queue
(kept 14 days); an alarm fires on its first message (alarms.py) and ``eventpipe redrive``
moves the messages back. Both queues are encrypted with SQS-managed keys.
"""

from __future__ import annotations

from chalicelib.runtime.pipeline_config import PipelineConfig
from eventpipe.deploy import naming as n
from eventpipe.deploy.naming import StageNames

DLQ_RETENTION_S = 14 * 86400


def queue_arn(logical_id: str = n.FINALIZE_QUEUE) -> dict:
    return {"Fn::GetAtt": [logical_id, "Arn"]}


def queues(config: PipelineConfig, names: StageNames) -> dict:
    worker = config.function("finalize_worker")
    return {
        n.FINALIZE_DLQ: {"Type": "AWS::SQS::Queue", "Properties": {
            "QueueName": names.finalize_dlq, "MessageRetentionPeriod": DLQ_RETENTION_S,
            "SqsManagedSseEnabled": True}},
        n.FINALIZE_QUEUE: {"Type": "AWS::SQS::Queue", "Properties": {
            "QueueName": names.finalize_queue,
            "VisibilityTimeout": worker.visibility_timeout_s or 6 * (worker.timeout_s or 900),
            "SqsManagedSseEnabled": True,
            "RedrivePolicy": {"deadLetterTargetArn": queue_arn(n.FINALIZE_DLQ),
                              "maxReceiveCount": worker.max_receive_count or 3}}},
    }


def mapping_properties(config: PipelineConfig, function: str) -> dict:
    """The SQS event source mapping (SAM ``SQS`` event properties) of an SQS-triggered function."""
    return {
        "Queue": {"Fn::Sub": f"${{{n.QUEUE_CONSUMERS[function]}.Arn}}"},  # the key chalice emits
        "BatchSize": config.function(function).batch_size or 1,
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
    }

