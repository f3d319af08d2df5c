"""One least-privilege execution role per function.

Every statement names its actions and resources: no ``*`` action, and no ``*`` resource
(none of the calls below needs one: each action supports resource-level permissions).
Log groups are created by the template (see storage.log_groups), so ``logs:CreateLogGroup``
is not needed. The roles replace the single role chalice would create: the dev and prod
stages set ``manage_iam_role: false`` in .chalice/config.json (so chalice emits no role) and
the merge template sets each function's ``Role`` to its own role.

Which calls each function makes (from chalicelib):

* api_handler: apps GetItem (authenticate, an app's limits) and DescribeTable (health); UpdateItem
  of the rate-limit buckets only (items ``bucket#<app_id>`` of the apps table); PutRecords and
  DescribeStreamSummary (ingest, health); HeadBucket/ListBucket, rollups/, tables/sessions/ and
  tables/persons/ reads
  (metrics API); OpenSearch reads only: ``POST /<daily indices>/_search`` (GET /v1/search) and
  ``GET /_cluster/health`` (GET /v1/health), never a write or the index template; insights
  (chalicelib/reads/insights.py): Athena queries in the stage's workgroup, which read the raw table
  (Glue GetDatabase/GetTable/GetPartitions, tables/events/) and write results under
  athena-results/insights/; the query ids in the state table (items ``insight#<id>`` only); the event
  types read from the raw table with pyiceberg.
* archive_events / aggregate_events: Kinesis mapping reads; Parquet and bad rows to S3;
  state table watermarks and progress.
* index_events: Kinesis mapping reads; OpenSearch bulk; search bad rows to S3.
* archive_events: stages one file per batch under staging/events/.
* commit_events: the raw events Iceberg table's one writer: reads and deletes staged files and its
  journals, reads, writes and deletes the table's files under tables/events/; Glue GetDatabase,
  GetTable, CreateTable (first run), UpdateTable (each commit); state table (progress, sweeps).
* finalize_windows: the planner: reads the raw table's metadata (Glue GetTable, tables/events/) and
  rollups/, writes its bookkeeping and deletes covered partials under rollups/; state table (the
  committer's progress); sends units to the finalize-units queue (backfill requests compute here).
* finalize_worker: the SQS mapping (receive, delete, attributes of the finalize-units queue); reads
  the raw table and rollups/, writes rollups/ (never deletes); state table reads; reads and writes
  insights/, tables/sessions/, tables/persons/ (persons and sessions of the hour) and reads each app's
  session gap (apps table GetItem).
* search_retention: lists and deletes daily indices.
* process_regulations (privacy deletions): the state table (regulations, the suppression list, the
  raw table's writer lease); the raw table as commit_events (under the lease); rollups as
  finalize_worker (persons and sessions too); rewrites or deletes staged files, bad rows and on-failure records (and their old
  versions, should the bucket keep any); OpenSearch ``_delete_by_query`` (POST) on the daily indices.
"""

from __future__ import annotations

from chalicelib.apps.ratelimit_store import BUCKET_PREFIX
from chalicelib.runtime.pipeline_config import PipelineConfig
from chalicelib.search.naming import index_pattern
from eventpipe.deploy import naming as n
from eventpipe.deploy.naming import StageNames
from eventpipe.deploy.storage import bucket_arn

ASSUME_LAMBDA = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                   "Action": "sts:AssumeRole"}],
}
#: What a Kinesis event source mapping needs from the function's role (Lambda's documented list,
#: minus ListStreams and SubscribeToShard: no enhanced fan-out consumer is used).
KINESIS_MAPPING_ACTIONS = ["kinesis:DescribeStream", "kinesis:DescribeStreamSummary", "kinesis:GetRecords",
                           "kinesis:GetShardIterator", "kinesis:ListShards"]
SEARCH_READ_WRITE = ["es:ESHttpGet", "es:ESHttpHead", "es:ESHttpPost", "es:ESHttpPut"]


def role_logical_id(function: str) -> str:
    return f"{n.FUNCTIONS[function]}Role"


def stream_arn() -> dict:
    return {"Fn::GetAtt": [n.STREAM, "Arn"]}


def table_arn(logical_id: str) -> dict:
    return {"Fn::GetAtt": [logical_id, "Arn"]}


def domain_arn(names: StageNames, suffix: str = "/*") -> dict:
    """Built from the domain's fixed name: the domain's access policy names these roles."""
    return {"Fn::Sub": f"arn:${{AWS::Partition}}:es:${{AWS::Region}}:${{AWS::AccountId}}:domain/"
                       f"{names.search_domain}{suffix}"}


def glue_arns(names: StageNames) -> list[dict]:
    """The catalog, the database and its raw ``events`` table (what pyiceberg's Glue catalog calls on)."""
    base = "arn:${AWS::Partition}:glue:${AWS::Region}:${AWS::AccountId}"
    return [{"Fn::Sub": f"{base}:catalog"}, {"Fn::Sub": f"{base}:database/{names.glue_database}"},
            {"Fn::Sub": f"{base}:table/{names.glue_database}/events"}]


def _allow(sid: str, actions: list[str], resources: list) -> dict:
    return {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources}


def _objects(*prefixes: str) -> list[dict]:
    return [bucket_arn(f"/{prefix}*") for prefix in prefixes]


def statements(function: str, names: StageNames) -> list[dict]:
    """The permissions of one function (logs first, then what its code calls)."""
    logical_id = n.FUNCTIONS[function]
    result = [_allow("Logs", ["logs:CreateLogStream", "logs:PutLogEvents"],
                     [{"Fn::GetAtt": [f"{logical_id}LogGroup", "Arn"]}])]
    if function in n.CONSUMERS:
        result += [
            _allow("ReadStream", KINESIS_MAPPING_ACTIONS, [stream_arn()]),
            # The on-failure destination: Lambda writes with the function's role; it needs
            # PutObject under aws/lambda/ and ListBucket on the bucket (Lambda's documented list).
            _allow("OnFailureDestination", ["s3:PutObject"], _objects(n.DEAD_LETTER_PREFIX)),
            _allow("ListLake", ["s3:ListBucket"], [bucket_arn()]),
        ]
    if function == "api_handler":
        result += [
            # Scan: whether an app is an operator (GET /v1/pipeline).
            _allow("Authenticate", ["dynamodb:GetItem", "dynamodb:DescribeTable", "dynamodb:Scan"],
                   [table_arn(n.APPS_TABLE)]),
            # Per-app rate limits (chalicelib/apps/ratelimit_store.py): one conditional UpdateItem per request, on
            # the bucket items only: the API can never write a key or an app's limits.
            {**_allow("RateLimitBuckets", ["dynamodb:UpdateItem"], [table_arn(n.APPS_TABLE)]),
             "Condition": {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": [f"{BUCKET_PREFIX}*"]}}},
            _allow("Ingest", ["kinesis:PutRecords", "kinesis:DescribeStreamSummary", "kinesis:ListShards"],
                   [stream_arn()]),
            _allow("ListLake", ["s3:ListBucket"], [bucket_arn()]),
            # GET /v1/pipeline also reads the bad rows and the on-failure records.
            _allow("ReadRollups", ["s3:GetObject"], _objects("rollups/", "bad-rows/", n.DEAD_LETTER_PREFIX)),
            # GET /v1/sessions and GET /v1/persons/{user_id} (chalicelib/reads/people.py).
            _allow("ReadInsights", ["s3:GetObject"], _objects("tables/sessions/", "tables/persons/")),
            # GET /v1/pipeline on AWS: IteratorAge, Errors, IncomingRecords (GetMetricData has no resource ARN).
            _allow("PipelineMetrics", ["cloudwatch:GetMetricData"], ["*"]),
            # The SDK-compatible routes keep the messages they refuse (chalicelib/ingest/sdk.py).
            _allow("WriteBadRows", ["s3:PutObject"], _objects("bad-rows/ingest/")),
            # Insights on Athena (chalicelib/reads/insight_engines.py): the query runs with the caller's
            # permissions, so the API reads the raw table and writes the results.
            _allow("InsightQueries", ["athena:StartQueryExecution", "athena:GetQueryExecution",
                                      "athena:GetQueryResults"],
                   [{"Fn::Sub": "arn:${AWS::Partition}:athena:${AWS::Region}:${AWS::AccountId}:workgroup/primary"}]),
            _allow("InsightCatalog", ["glue:GetDatabase", "glue:GetTable", "glue:GetPartitions"], glue_arns(names)),
            _allow("InsightReads", ["s3:GetObject"], _objects("tables/events/", "athena-results/insights/")),
            _allow("InsightResults", ["s3:PutObject", "s3:GetBucketLocation"],
                   [*_objects("athena-results/insights/"), bucket_arn()]),
            {**_allow("InsightIds", ["dynamodb:GetItem", "dynamodb:PutItem"], [table_arn(n.STATE_TABLE)]),
             "Condition": {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["insight#*"]}}},
        ]
    if function in n.QUEUE_CONSUMERS:  # what Lambda's SQS event source mapping needs from the role
        result.append(_allow("ReadQueue", ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
                                           "sqs:ChangeMessageVisibility"],
                             [{"Fn::GetAtt": [n.QUEUE_CONSUMERS[function], "Arn"]}]))
    if function == "finalize_worker":
        result += [
            _allow("State", ["dynamodb:GetItem"], [table_arn(n.STATE_TABLE)]),
            _allow("ListLake", ["s3:ListBucket"], [bucket_arn()]),
            _allow("ReadEvents", ["s3:GetObject"], _objects("tables/events/")),
            _allow("RawTableCatalog", ["glue:GetDatabase", "glue:GetTable"], glue_arns(names)),
            _allow("Rollups", ["s3:GetObject", "s3:PutObject"], _objects("rollups/")),
        ]
    if function in ("finalize_worker", "process_regulations"):
        # Persons and sessions of the finalized hours (chalicelib/lake/people_tables.py), each app's session gap.
        result += [_allow("Insights", ["s3:GetObject", "s3:PutObject"],
                          _objects("insights/", "tables/sessions/", "tables/persons/")),
                   _allow("SessionGap", ["dynamodb:GetItem"], [table_arn(n.APPS_TABLE)])]
    if function in ("aggregate_events", "finalize_windows", "commit_events"):
        result.append(_allow("State", ["dynamodb:GetItem", "dynamodb:PutItem"], [table_arn(n.STATE_TABLE)]))
    if function == "commit_events":  # the raw table's writer lease (chalicelib/lake/writer_lock.py)
        result.append(_allow("State", ["dynamodb:DeleteItem"], [table_arn(n.STATE_TABLE)]))
    if function == "api_handler":  # regulations, the suppression list and its per-app counts
        result.append(_allow("Regulations", ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
                                             "dynamodb:BatchGetItem", "dynamodb:Scan"], [table_arn(n.STATE_TABLE)]))
    if function == "process_regulations":
        result += [
            _allow("State", ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
                             "dynamodb:Scan"], [table_arn(n.STATE_TABLE)]),
            _allow("ListLake", ["s3:ListBucket", "s3:ListBucketVersions", "s3:GetBucketVersioning"], [bucket_arn()]),
            _allow("Erase", ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion"],
                   _objects("staging/", "tables/events/", "rollups/", "bad-rows/", n.DEAD_LETTER_PREFIX,
                            "aws/lambda-redriven/")),
            _allow("RawTableCatalog", ["glue:GetDatabase", "glue:GetTable", "glue:CreateTable", "glue:UpdateTable"],
                   glue_arns(names)),
        ]
    if function == "archive_events":
        result.append(_allow("WriteLake", ["s3:PutObject"], _objects("staging/events/", "bad-rows/")))
    if function == "commit_events":
        result += [
            _allow("ListLake", ["s3:ListBucket"], [bucket_arn()]),
            _allow("RawTable", ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                   _objects("staging/", "tables/events/")),
            _allow("RawTableCatalog", ["glue:GetDatabase", "glue:GetTable", "glue:CreateTable", "glue:UpdateTable"],
                   glue_arns(names)),
        ]
    if function == "aggregate_events":
        result.append(_allow("WriteLake", ["s3:PutObject"], _objects("rollups/", "bad-rows/")))
    if function == "index_events":
        result.append(_allow("WriteBadRows", ["s3:PutObject"], _objects("bad-rows/")))
    if function == "finalize_windows":
        result += [
            _allow("ListLake", ["s3:ListBucket"], [bucket_arn()]),
            _allow("ReadEvents", ["s3:GetObject"], _objects("tables/events/")),
            _allow("RawTableCatalog", ["glue:GetDatabase", "glue:GetTable"], glue_arns(names)),
            _allow("Rollups", ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], _objects("rollups/")),
            _allow("SendUnits", ["sqs:SendMessage"], [{"Fn::GetAtt": [n.FINALIZE_QUEUE, "Arn"]}]),
        ]
    result += search_statements(function, names)
    return _merge_sids(result)


def search_statements(function: str, names: StageNames) -> list[dict]:
    """A function's OpenSearch permissions: the same statements in its role and in the domain's policy
    (within one account either policy alone grants access, so both must be this narrow)."""
    if function not in n.SEARCH_FUNCTIONS:
        return []
    if function == "api_handler":  # reads only: the calls tests/deploy/test_search_permissions.py records
        # POST, not GET: opensearch-py sends a search with a body as POST; on the index pattern alone
        # ESHttpPost would also allow POST /<index>/_doc (writes), so only the _search path.
        return [_allow("SearchRead", ["es:ESHttpPost"], [domain_arn(names, f"/{index_pattern()}/_search")]),
                _allow("SearchHealth", ["es:ESHttpGet"], [domain_arn(names, "/_cluster/health")])]
    actions = SEARCH_READ_WRITE + (["es:ESHttpDelete"] if function == "search_retention" else [])
    return [_allow("Search", actions, [domain_arn(names)])]


def _merge_sids(items: list[dict]) -> list[dict]:
    """Statements with the same Sid become one (IAM refuses duplicate Sids)."""
    merged: dict[str, dict] = {}
    for item in items:
        if item["Sid"] in merged:
            target = merged[item["Sid"]]
            target["Action"] = list(dict.fromkeys([*target["Action"], *item["Action"]]))
            target["Resource"] = [*target["Resource"], *[r for r in item["Resource"] if r not in target["Resource"]]]
        else:
            merged[item["Sid"]] = {**item, "Action": list(item["Action"]), "Resource": list(item["Resource"])}
    return list(merged.values())


def roles(config: PipelineConfig, names: StageNames) -> dict:
    """``<Function>Role`` for every function, each with its one inline policy."""
    return {
        role_logical_id(function): {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "Description": f"{names.function(function)}: execution role (least privilege)",
                "AssumeRolePolicyDocument": ASSUME_LAMBDA,
                "Policies": [{"PolicyName": f"{function}-permissions",
                              "PolicyDocument": {"Version": "2012-10-17",
                                                 "Statement": statements(function, names)}}],
            },
        }
        for function in n.FUNCTIONS
    }


def search_access_policy(names: StageNames) -> dict:
    """The domain's resource policy: only the search functions' roles, each with its own statements."""
    statements = []
    for function in n.SEARCH_FUNCTIONS:
        principal = {"AWS": [{"Fn::GetAtt": [role_logical_id(function), "Arn"]}]}
        for statement in search_statements(function, names):
            sid = f"{n.FUNCTIONS[function]}{statement['Sid']}"
            statements.append({**statement, "Sid": sid, "Principal": principal})
    return {"Version": "2012-10-17", "Statement": statements}
