"""CloudWatch alarms on one SNS topic, and the dead-letter notification.

* per consumer: iterator age (how far behind the stream it is) and failed deliveries to its
  on-failure destination (``DestinationDeliveryFailures``);
* per function: errors and throttles;
* the finalize-units dead-letter queue: any message in it;
* the API: 5xx responses and p99 latency;
* the search domain: cluster status red (and yellow with more than one node) and JVM memory
  pressure;
* each object Lambda writes under ``aws/lambda/`` (a batch that exhausted its retries) is
  announced on the topic by an S3 event notification (storage.bucket): immediate and free,
  where an alarm on S3 request metrics would cost a metrics filter and lag by minutes.

The topic is KMS-encrypted only with the optional customer managed key (``KmsKeyArn``, see
storage.py): CloudWatch and S3 cannot publish to a topic under the AWS managed SNS key, and
alarm messages carry no event data.
"""

from __future__ import annotations

from chalicelib.runtime.pipeline_config import PipelineConfig
from eventpipe.deploy import naming as n
from eventpipe.deploy.naming import StageNames
from eventpipe.deploy.storage import KMS_KEY_PARAMETER, with_kms_key

PERIOD_S = 300


def _alarm(description: str, namespace: str, metric: str, dimensions: dict, threshold: float, *,
           statistic: str = "Sum", comparison: str = "GreaterThanOrEqualToThreshold",
           missing: str = "notBreaching", periods: int = 1) -> dict:
    properties = {
        "AlarmDescription": description,
        "Namespace": namespace, "MetricName": metric,
        "Dimensions": [{"Name": key, "Value": value} for key, value in dimensions.items()],
        "Period": PERIOD_S, "EvaluationPeriods": periods, "Threshold": threshold,
        "ComparisonOperator": comparison, "TreatMissingData": missing,
        "AlarmActions": [{"Ref": n.ALARM_TOPIC}], "OKActions": [{"Ref": n.ALARM_TOPIC}],
    }
    if statistic.startswith("p"):
        properties["ExtendedStatistic"] = statistic
    else:
        properties["Statistic"] = statistic
    return {"Type": "AWS::CloudWatch::Alarm", "Properties": properties}


def topic(config: PipelineConfig, names: StageNames) -> dict:
    """The alarm topic, its policy (S3 may publish dead-letter notices) and an optional e-mail."""
    resources = {
        n.ALARM_TOPIC: {"Type": "AWS::SNS::Topic", "Properties": {
            "TopicName": names.alarm_topic, "KmsMasterKeyId": with_kms_key({"Ref": KMS_KEY_PARAMETER})}},
        n.ALARM_TOPIC_POLICY: {
            "Type": "AWS::SNS::TopicPolicy",
            "Properties": {"Topics": [{"Ref": n.ALARM_TOPIC}], "PolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [{
                    "Sid": "LakeBucketDeadLetterNotices", "Effect": "Allow",
                    "Principal": {"Service": "s3.amazonaws.com"}, "Action": "sns:Publish",
                    "Resource": {"Ref": n.ALARM_TOPIC},
                    # The bucket's name, not GetAtt: the bucket depends on this policy.
                    "Condition": {"ArnEquals": {"aws:SourceArn": {"Fn::Sub": f"arn:${{AWS::Partition}}:s3:::"
                                                                              f"{names.bucket_sub}"}},
                                  "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}},
                }]}},
        },
    }
    if config.alarms.email:
        resources["AlarmEmailSubscription"] = {
            "Type": "AWS::SNS::Subscription",
            "Properties": {"TopicArn": {"Ref": n.ALARM_TOPIC}, "Protocol": "email",
                           "Endpoint": config.alarms.email}}
    return resources


def alarms(config: PipelineConfig, names: StageNames) -> dict:
    """Every alarm of the stage, keyed by logical id."""
    limits = config.alarms
    resources: dict = {}
    for function, logical_id in n.FUNCTIONS.items():
        dims = {"FunctionName": names.function(function)}
        resources[f"{logical_id}ErrorsAlarm"] = _alarm(
            f"{function}: invocations failed", "AWS/Lambda", "Errors", dims, limits.function_errors)
        resources[f"{logical_id}ThrottlesAlarm"] = _alarm(
            f"{function}: invocations throttled", "AWS/Lambda", "Throttles", dims, limits.function_throttles)
        if function in n.CONSUMERS:
            resources[f"{logical_id}IteratorAgeAlarm"] = _alarm(
                f"{function}: more than {limits.iterator_age_ms // 1000} s behind the stream", "AWS/Lambda",
                "IteratorAge", dims, limits.iterator_age_ms, statistic="Maximum",
                comparison="GreaterThanThreshold")
            resources[f"{logical_id}DestinationFailuresAlarm"] = _alarm(
                f"{function}: a failed batch could not be written to the on-failure destination",
                "AWS/Lambda", "DestinationDeliveryFailures", dims, 1)
    resources["FinalizeUnitsDeadLettersAlarm"] = _alarm(
        "finalize_worker: a finalization unit failed every attempt (in the dead-letter queue; "
        "`eventpipe redrive --consumer finalize_worker` after the fix)", "AWS/SQS",
        "ApproximateNumberOfMessagesVisible", {"QueueName": names.finalize_dlq}, 1, statistic="Maximum")
    api = {"ApiName": names.rest_api, "Stage": "api"}
    resources["Api5xxAlarm"] = _alarm("API: 5xx responses", "AWS/ApiGateway", "5XXError", api, limits.api_5xx)
    resources["ApiLatencyAlarm"] = _alarm(
        f"API: p99 latency above {limits.api_latency_p99_ms} ms", "AWS/ApiGateway", "Latency", api,
        limits.api_latency_p99_ms, statistic="p99", comparison="GreaterThanThreshold")
    domain = {"DomainName": names.search_domain, "ClientId": {"Ref": "AWS::AccountId"}}
    resources["SearchClusterRedAlarm"] = _alarm(
        "search: cluster status red (a primary shard is unassigned)", "AWS/ES", "ClusterStatus.red", domain, 1,
        statistic="Maximum")
    if config.search.instance_count > 1:  # a single node holds no replicas: yellow is its normal state
        resources["SearchClusterYellowAlarm"] = _alarm(
            "search: cluster status yellow (a replica is unassigned)", "AWS/ES", "ClusterStatus.yellow", domain,
            1, statistic="Maximum", periods=3)
    resources["SearchJvmPressureAlarm"] = _alarm(
        f"search: JVM memory pressure above {limits.search_jvm_pressure_pct}%", "AWS/ES", "JVMMemoryPressure",
        domain, limits.search_jvm_pressure_pct, statistic="Maximum", comparison="GreaterThanThreshold", periods=3)
    return resources
