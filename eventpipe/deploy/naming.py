"""Deterministic names of one stage's resources, and the functions the template knows.

Names are fixed strings (not CloudFormation-generated) wherever a policy must name a
resource that depends on the policy's role: a role may not ``GetAtt`` a function or a
domain that itself ``GetAtt``s the role (a circular dependency), so both sides build the
same ARN from these names instead.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Chalice function name -> CloudFormation logical id (as ``chalice package`` emits them).
FUNCTIONS = {
    "api_handler": "APIHandler",
    "archive_events": "ArchiveEvents",
    "aggregate_events": "AggregateEvents",
    "index_events": "IndexEvents",
    "finalize_windows": "FinalizeWindows",
    "finalize_worker": "FinalizeWorker",
    "commit_events": "CommitEvents",
    "search_retention": "SearchRetention",
    "process_regulations": "ProcessRegulations",
}
#: The Kinesis consumers among them (each has one event source mapping).
CONSUMERS = ("archive_events", "aggregate_events", "index_events")
#: Functions that talk to OpenSearch (they get OPENSEARCH_URL and a domain policy entry).
SEARCH_FUNCTIONS = ("api_handler", "index_events", "search_retention", "process_regulations")

#: Logical ids of the resources the merge template adds.
STREAM = "EventStream"
BUCKET = "LakeBucket"
BUCKET_POLICY = "LakeBucketPolicy"
APPS_TABLE = "AppsTable"
STATE_TABLE = "StateTable"
GLUE_DATABASE = "GlueDatabase"
WORKGROUP = "AthenaWorkGroup"
SEARCH_DOMAIN = "SearchDomain"
ALARM_TOPIC = "AlarmTopic"
ALARM_TOPIC_POLICY = "AlarmTopicPolicy"
REST_API = "RestAPI"
FINALIZE_QUEUE = "FinalizeUnitsQueue"
FINALIZE_DLQ = "FinalizeUnitsDeadLetterQueue"
#: The SQS-triggered functions: function -> the logical id of its queue.
QUEUE_CONSUMERS = {"finalize_worker": FINALIZE_QUEUE}

#: Where Lambda writes a Kinesis mapping's on-failure records in an S3 destination
#: (``aws/lambda/<ESM-UUID>/<shardID>/YYYY/MM/DD/...``; the prefix is Lambda's, not ours).
DEAD_LETTER_PREFIX = "aws/lambda/"
ATHENA_RESULTS_PREFIX = "athena-results/"


def camel(name: str) -> str:
    """``search_retention`` -> ``SearchRetention`` (for logical ids)."""
    return "".join(part[:1].upper() + part[1:] for part in name.replace("-", "_").split("_"))


@dataclass(frozen=True)
class StageNames:
    """Physical names of one stage (``eventpipe-dev-...``)."""

    app: str
    stage: str

    @property
    def prefix(self) -> str:
        return f"{self.app}-{self.stage}"

    @property
    def stack(self) -> str:
        return self.prefix

    @property
    def stream(self) -> str:
        return f"{self.prefix}-events"

    @property
    def apps_table(self) -> str:
        return f"{self.prefix}-apps"

    @property
    def state_table(self) -> str:
        return f"{self.prefix}-state"

    @property
    def bucket_sub(self) -> str:
        """The lake bucket's name as an ``Fn::Sub`` string: app, stage, account and region."""
        return f"{self.prefix}-${{AWS::AccountId}}-${{AWS::Region}}"

    @property
    def glue_database(self) -> str:
        return f"{self.app}_{self.stage}".replace("-", "_")

    @property
    def workgroup(self) -> str:
        return self.prefix

    @property
    def search_domain(self) -> str:
        return self.prefix[:28]  # OpenSearch domain names: 3-28 characters

    @property
    def rest_api(self) -> str:
        return self.prefix

    @property
    def alarm_topic(self) -> str:
        return f"{self.prefix}-alarms"

    @property
    def finalize_queue(self) -> str:
        return f"{self.prefix}-finalize-units"

    @property
    def finalize_dlq(self) -> str:
        return f"{self.finalize_queue}-dlq"  # eventpipe redrive finds it by this name

    def function(self, name: str) -> str:
        """Chalice's naming: ``eventpipe-dev-archive_events``."""
        return f"{self.prefix}-{name}"

    def log_group(self, name: str) -> str:
        return f"/aws/lambda/{self.function(name)}"

    def layer(self, name: str) -> str:
        return f"{self.prefix}-{name}"
