"""The CloudFormation templates in infra/: cfn-lint, a deploy on moto, both jobs on its outputs.

`stack` deploys `infra/pipeline.yaml` on moto's CloudFormation (127.0.0.1)
once for the module, stage CODE, with two departures from a real deploy,
each forced by moto and checked here instead:

- moto's CloudFormation has no model for `AWS::KinesisFirehose::DeliveryStream`
  (a `!GetAtt` on it fails the stack), `AWS::CloudWatch::Alarm` and
  `AWS::S3::BucketPolicy` (skipped with a warning). The stack is deployed
  with `ArchiveDelivery=none`, the template's own switch that leaves out the
  delivery stream and its rule, and these three types are checked in the
  template text (`test_what_moto_cannot_create_is_checked_in_the_template`).
- moto names the bus of a rule after the last `/`-separated part of
  `EventBusName`, so no rule can be put on a partner bus
  (`aws.partner/stripe.com/ed_...`) there. The partner bus itself is created
  (after registering the partner event source, as Stripe does), and the
  stream rule is deployed on a stand-in bus with a plain name.

moto's EventBridge delivers to no Kinesis or Firehose target, so the test
puts the events on the stack's stream and the archive in the stack's bucket
as those would, then runs the bounded streaming job and a backfill with
flags built only from the stack's outputs, `--aws_role_arn` included (moto's
STS, a local stand-in for Google's metadata server), as the live stage
(`--stripe_mode live`). The queues are the template's default, standard ones
(the ledger makes every send exactly once); the jobs also feed the stack's
contributions store queue and acquisitions bus and count in its CloudWatch
namespace, which the post-payment-error alarm watches.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from cfnlint.decode import decode_str
from moto.cloudformation.parsing import resource_class_from_type

from pipelines import backfill, streaming
from tests.fixtures.metadata_server import SERVICE_ACCOUNT_ID, MetadataServer
from tests.fixtures.moto_server import MotoServer
from tests.fixtures.sinks import drain_bodies, ledger_items
from tests.pipelines.expected import (
    ACQUISITIONS_SQL,
    CURRENT_CONTRIBUTIONS_SQL,
    expected_acquisitions,
    expected_contributions,
    expected_messages,
    live_only,
    paid_payments,
    rows,
)
from tools.generate_archive import generate, write_archive
from tools.put_on_kinesis import kinesis_client, put_records
from transforms.infrastructure import stop_aws_role

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = sorted((PROJECT_ROOT / "infra").glob("*.yaml"))
TEMPLATE = PROJECT_ROOT / "infra" / "pipeline.yaml"
ACCOUNT = "123456789012"
PAYMENTS = 25
SEED = 12
#: Types moto's CloudFormation has no model for (checked in the template instead).
NOT_ON_MOTO = {
    "AWS::CloudWatch::Alarm",
    "AWS::KinesisFirehose::DeliveryStream",
    "AWS::S3::BucketPolicy",
}
STATIC_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


@dataclass(frozen=True)
class Stack:
    outputs: dict[str, str]
    resources: dict[str, tuple[str, str]]  # logical id -> (type, physical id)
    event_source: str
    stand_in_bus: str  # where the stream rule is deployed on moto (see the module docstring)


def _template() -> dict[str, Any]:
    template, errors = decode_str(TEMPLATE.read_text())
    assert not errors, errors
    assert template is not None
    return dict(template)


def _client(service: str) -> contextlib.closing[Any]:
    return contextlib.closing(boto3.session.Session().client(service))


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda path: path.name)
def test_cfn_lint_passes(template: Path) -> None:
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    done = subprocess.run(
        [str(cfn_lint), str(template)], capture_output=True, text=True, check=False, timeout=300
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


MESSAGE_KINDS = ("soft_opt_in", "thank_you_email")


def _alarm_of_template() -> dict[str, Any]:
    """The post-payment-error alarm with the template's defaults (moto creates no alarm)."""
    template = _template()
    properties = template["Resources"]["PostPaymentErrorAlarm"]["Properties"]
    parameters = template["Parameters"]
    return {
        "Namespace": parameters["MetricsNamespace"]["Default"],
        "MetricName": parameters["PostPaymentErrorMetricName"]["Default"],
        "Dimensions": [{"Name": d["Name"], "Value": d["Value"]} for d in properties["Dimensions"]],
    }


@pytest.fixture(scope="module")
def stack(moto_server: MotoServer) -> Stack:
    source = f"aws.partner/stripe.com/ed_{uuid.uuid4().hex[:20]}"
    template = _template()
    resources = template["Resources"]
    stand_in_bus = f"stripe-stand-in-{uuid.uuid4().hex[:8]}"
    resources["StandInBus"] = {
        "Type": "AWS::Events::EventBus",
        "Properties": {"Name": stand_in_bus},
    }
    resources["StreamRule"]["Properties"]["EventBusName"] = {"Fn::GetAtt": ["StandInBus", "Name"]}
    parameters = {
        "Stage": "CODE",
        "StripeEventSourceName": source,
        "GoogleServiceAccountId": SERVICE_ACCOUNT_ID,
        "ArchiveDelivery": "none",
    }
    name = f"stripe-pipeline-{uuid.uuid4().hex[:8]}"
    with _client("events") as events:
        events.create_partner_event_source(Name=source, Account=ACCOUNT)
    with _client("cloudformation") as cloudformation:
        cloudformation.create_stack(
            StackName=name,
            TemplateBody=json.dumps(template),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
            Capabilities=["CAPABILITY_IAM"],
        )
        described = cloudformation.describe_stacks(StackName=name)["Stacks"][0]
        assert described["StackStatus"] == "CREATE_COMPLETE"
        summaries = cloudformation.list_stack_resources(StackName=name)
    return Stack(
        outputs={o["OutputKey"]: o["OutputValue"] for o in described["Outputs"]},
        resources={
            r["LogicalResourceId"]: (r["ResourceType"], r["PhysicalResourceId"])
            for r in summaries["StackResourceSummaries"]
        },
        event_source=source,
        stand_in_bus=stand_in_bus,
    )


def test_the_outputs_name_everything_the_jobs_flags_need(stack: Stack) -> None:
    queue = f"https://sqs.eu-west-1.amazonaws.com/{ACCOUNT}"
    assert {k: v for k, v in stack.outputs.items() if k != "AwsRoleArn"} == {
        "KinesisStream": f"arn:aws:kinesis:eu-west-1:{ACCOUNT}:stream/stripe-events-CODE",
        "KinesisCoordinationTable": "stripe-pipeline-kinesis-coordination-CODE",
        "ArchiveSource": f"s3://stripe-events-archive-{ACCOUNT}-eu-west-1-code/eventbridge/",
        "ArchiveBucket": f"stripe-events-archive-{ACCOUNT}-eu-west-1-code",
        "SentMessagesTable": "stripe-pipeline-messages-sent-CODE",
        "EmailsQueueUrl": f"{queue}/contribution-thank-you-CODE",
        "OptInsQueueUrl": f"{queue}/soft-opt-ins-CODE",
        "ContributionsStoreQueueUrl": f"{queue}/contributions-store-CODE",
        "AcquisitionsBus": "acquisitions-bus-CODE",
        "CloudWatchNamespace": "stripe-contributions-pipeline",
        "StripeEventBusName": stack.event_source,
        "AlarmTopicArn": f"arn:aws:sns:eu-west-1:{ACCOUNT}:stripe-pipeline-alarms-CODE",
    }
    assert stack.outputs["AwsRoleArn"].startswith(f"arn:aws:iam::{ACCOUNT}:role/")


def test_what_moto_cannot_create_is_checked_in_the_template() -> None:
    resources = _template()["Resources"]
    types = {resource["Type"] for resource in resources.values()}
    assert {t for t in types if resource_class_from_type(t) is None} == NOT_ON_MOTO

    firehose = resources["ArchiveDeliveryStream"]["Properties"]
    destination = firehose["ExtendedS3DestinationConfiguration"]
    assert destination["Prefix"] == "eventbridge/!{timestamp:yyyy/MM/dd/HH}/"
    assert destination["ErrorOutputPrefix"] == (
        "errors/!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd/HH}/"
    )
    assert destination["CompressionFormat"] == "GZIP"
    assert destination["ProcessingConfiguration"]["Processors"] == [
        {
            "Type": "AppendDelimiterToRecord",
            "Parameters": [{"ParameterName": "Delimiter", "ParameterValue": "\\n"}],
        }
    ]
    assert resources["ArchiveRule"]["Properties"]["Targets"][0]["Arn"] == {
        "Fn::GetAtt": ["ArchiveDeliveryStream", "Arn"]
    }
    for rule in ("StreamRule", "ArchiveRule"):
        properties = resources[rule]["Properties"]
        assert properties["EventBusName"] == {"Fn::GetAtt": ["StripeEventBus", "Name"]}

    alarms = {
        logical: (p["Namespace"], p["MetricName"], p["Statistic"], p["ComparisonOperator"])
        for logical, resource in resources.items()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
        for p in [resource["Properties"]]
    }
    dead_letters = (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        "Maximum",
        "GreaterThanThreshold",
    )
    assert alarms == {
        "IteratorAgeAlarm": (
            "AWS/Kinesis",
            "GetRecords.IteratorAgeMilliseconds",
            "Maximum",
            "GreaterThanThreshold",
        ),
        "EmailsDeadLetterAlarm": dead_letters,
        "OptInsDeadLetterAlarm": dead_letters,
        "ContributionsStoreDeadLetterAlarm": dead_letters,
        "PostPaymentErrorAlarm": (
            {"Ref": "MetricsNamespace"},
            {"Ref": "PostPaymentErrorMetricName"},
            "Sum",
            "GreaterThanThreshold",
        ),
    }
    assert all(
        resource["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}]
        for resource in resources.values()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
    )

    (statement,) = resources["ArchiveBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert (statement["Effect"], statement["Action"], statement["Condition"]) == (
        "Deny",
        "s3:*",
        {"Bool": {"aws:SecureTransport": "false"}},
    )


def test_the_stream_bucket_and_tables_are_as_specified(stack: Stack) -> None:
    """What moto models of them is read back from moto; what it ignores, from the template."""
    with _client("kinesis") as kinesis:
        summary = kinesis.describe_stream_summary(StreamARN=stack.outputs["KinesisStream"])
    assert summary["StreamDescriptionSummary"]["RetentionPeriodHours"] == 168
    with _client("s3") as s3:
        encryption = s3.get_bucket_encryption(Bucket=stack.outputs["ArchiveBucket"])
    (rule,) = encryption["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    with _client("dynamodb") as dynamodb:
        for output, key in (
            ("KinesisCoordinationTable", "shardKey"),
            ("SentMessagesTable", "messageKey"),
        ):
            table = dynamodb.describe_table(TableName=stack.outputs[output])["Table"]
            assert table["KeySchema"] == [{"AttributeName": key, "KeyType": "HASH"}]
            assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"

    # moto's models read only ShardCount, RetentionPeriodHours and Tags of a stream, only
    # BucketEncryption of a bucket, and no
    # PointInTimeRecoverySpecification or SSEEnabled of a table.
    resources = _template()["Resources"]
    stream = resources["EventStream"]["Properties"]
    assert stream["StreamModeDetails"] == {"StreamMode": {"Ref": "StreamMode"}}
    assert stream["StreamEncryption"] == {"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"}
    assert _template()["Parameters"]["StreamMode"]["Default"] == "ON_DEMAND"
    bucket = resources["ArchiveBucket"]["Properties"]
    assert bucket["PublicAccessBlockConfiguration"] == dict.fromkeys(
        ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"), True
    )
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    (lifecycle,) = bucket["LifecycleConfiguration"]["Rules"]
    assert lifecycle["Transitions"] == [
        {"StorageClass": "STANDARD_IA", "TransitionInDays": 30},
        {"StorageClass": "GLACIER_IR", "TransitionInDays": 180},
    ]
    for table in ("CoordinationTable", "MessageLedgerTable"):
        properties = resources[table]["Properties"]
        assert properties["BillingMode"] == "PAY_PER_REQUEST"
        assert properties["SSESpecification"] == {"SSEEnabled": True}
        assert properties["PointInTimeRecoverySpecification"] == {
            "PointInTimeRecoveryEnabled": True
        }


def test_each_queue_has_a_dead_letter_queue(stack: Stack) -> None:
    with _client("sqs") as sqs:
        for output in ("EmailsQueueUrl", "OptInsQueueUrl", "ContributionsStoreQueueUrl"):
            url = stack.outputs[output]
            attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
            redrive = json.loads(attributes["Attributes"]["RedrivePolicy"])
            dead_letter_url = url.replace("-CODE", "-dlq-CODE")
            dead_letter = sqs.get_queue_attributes(
                QueueUrl=dead_letter_url, AttributeNames=["QueueArn"]
            )
            assert redrive == {
                "deadLetterTargetArn": dead_letter["Attributes"]["QueueArn"],
                "maxReceiveCount": 5,
            }
            assert attributes["Attributes"].get("FifoQueue", "false") == "false"


def test_the_role_trusts_only_the_workers_service_account(stack: Stack) -> None:
    role_name = stack.outputs["AwsRoleArn"].rsplit("/", 1)[1]
    with _client("iam") as iam:
        role = iam.get_role(RoleName=role_name)["Role"]
        policies = iam.list_role_policies(RoleName=role_name)["PolicyNames"]
    (statement,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert statement == {
        "Effect": "Allow",
        "Principal": {"Federated": "accounts.google.com"},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {
            "StringEquals": {
                "accounts.google.com:aud": SERVICE_ACCOUNT_ID,
                "accounts.google.com:sub": SERVICE_ACCOUNT_ID,
                "accounts.google.com:oaud": "sts.amazonaws.com",
            }
        },
    }
    assert sorted(policies) == ["read-stripe-events", "write-outputs"]


def test_stripe_events_reach_the_stream_by_rule(stack: Stack) -> None:
    with _client("events") as events:
        partner = events.describe_event_bus(Name=stack.event_source)
        (rule,) = events.list_rules(EventBusName=stack.stand_in_bus)["Rules"]
        (target,) = events.list_targets_by_rule(Rule=rule["Name"], EventBusName=stack.stand_in_bus)[
            "Targets"
        ]
    assert rule["Name"] == "stripe-events-to-stream-CODE"
    assert partner["Name"] == stack.event_source
    assert json.loads(rule["EventPattern"]) == {"source": [{"prefix": "aws.partner/stripe.com"}]}
    assert target["Arn"] == stack.outputs["KinesisStream"]
    assert target["KinesisParameters"] == {"PartitionKeyPath": "$.id"}


@contextlib.contextmanager
def _as_the_role(stack: Stack) -> Iterator[None]:
    """Without the moto fixture's static keys, so that the role is the only credential."""
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name in STATIC_KEYS:
                patch.delenv(name)
            yield
    finally:
        stop_aws_role()


def _run(job: Any, argv: list[str], out: Path) -> str:
    with out.open("w") as capture, contextlib.redirect_stdout(capture):
        code = job(argv)
    summary = out.read_text()
    assert code == 0, summary
    return summary


def test_both_jobs_run_on_the_stack_with_flags_from_its_outputs(
    stack: Stack, metadata_server: MetadataServer, tmp_path: Path
) -> None:
    outputs = stack.outputs
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
    archive = generate(payments=PAYMENTS, seed=SEED, start=start, hours=1)
    truth = archive.truth.to_json()
    stream_name = outputs["KinesisStream"].rsplit("/", 1)[1]
    with contextlib.closing(kinesis_client()) as kinesis:
        put_records(kinesis, stream_name, archive.envelopes(include_malformed=True))
    folder = tmp_path / "archive"
    write_archive(archive, folder, buffer_seconds=900)
    prefix = outputs["ArchiveSource"].removeprefix(f"s3://{outputs['ArchiveBucket']}/")
    with _client("s3") as s3:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            key = f"{prefix}{path.relative_to(folder)}"
            s3.put_object(Bucket=outputs["ArchiveBucket"], Key=key, Body=path.read_bytes())

    warehouse = tmp_path / "warehouse.duckdb"
    shared = [
        "--emails_queue_url", outputs["EmailsQueueUrl"],
        "--opt_ins_queue_url", outputs["OptInsQueueUrl"],
        "--sent_messages_table", outputs["SentMessagesTable"],
        "--contributions_store_queue_url", outputs["ContributionsStoreQueueUrl"],
        "--contributions_store_key_id", "key-1",
        "--acquisitions_bus", outputs["AcquisitionsBus"],
        "--cloudwatch_namespace", outputs["CloudWatchNamespace"],
        "--stripe_mode", "live",
        "--warehouse", str(warehouse),
        "--aws_role_arn", outputs["AwsRoleArn"],
        "--aws_identity_token_url", metadata_server.url,
    ]  # fmt: skip
    with _as_the_role(stack):
        streamed = _run(
            streaming.run,
            [
                "--kinesis_stream",
                outputs["KinesisStream"],
                "--kinesis_coordination_table",
                outputs["KinesisCoordinationTable"],
                "--idle_timeout_s",
                "3",
                *shared,
            ],  # fmt: skip
            tmp_path / "streaming.txt",
        )
        contributions = rows(warehouse, CURRENT_CONTRIBUTIONS_SQL)
        acquisitions = rows(warehouse, ACQUISITIONS_SQL)
        emails = drain_bodies(outputs["EmailsQueueUrl"])
        opt_ins = drain_bodies(outputs["OptInsQueueUrl"])
        stored = drain_bodies(outputs["ContributionsStoreQueueUrl"])
        ledger = ledger_items(outputs["SentMessagesTable"])
        backfilled = _run(
            backfill.run, ["--source", outputs["ArchiveSource"], *shared], tmp_path / "backfill.txt"
        )
        emails_again = drain_bodies(outputs["EmailsQueueUrl"])
        opt_ins_again = drain_bodies(outputs["OptInsQueueUrl"])
        stored_again = drain_bodies(outputs["ContributionsStoreQueueUrl"])
        with _client("cloudwatch") as cloudwatch:
            published = cloudwatch.list_metrics(Namespace=outputs["CloudWatchNamespace"])
    alarm = _alarm_of_template()

    truth = live_only(truth)
    assert contributions == expected_contributions(truth)
    assert acquisitions == expected_acquisitions(truth)
    paid = sorted(p["charge_id"] for p in paid_payments(truth))
    # Standard queues: no group id. One newContributionData per paid payment, one
    # refundedPaymentId per fully refunded charge.
    bodies = [json.loads(body) for body in stored]
    assert sum(1 for body in bodies if set(body) == {"newContributionData"}) == len(paid)
    refunded = sorted(p["charge_id"] for p in truth["payments"] if p["status"] == "Refunded")
    assert refunded
    assert sorted(b["refundedPaymentId"] for b in bodies if "refundedPaymentId" in b) == refunded
    assert len(bodies) == len(paid) + len(refunded)
    expected = expected_messages(truth)
    assert expected
    identities = sorted(identity for _, identity in expected)
    assert sorted(json.loads(body)["IdentityUserId"] for body in emails) == identities
    assert sorted(json.loads(body)["identityId"] for body in opt_ins) == identities
    messages = {k: v for k, v in ledger.items() if k.split("#")[0] in MESSAGE_KINDS}
    assert messages == {f"{kind}#{pid}": "sent" for pid, _ in expected for kind in MESSAGE_KINDS}
    assert {k: v for k, v in ledger.items() if k.startswith("acquisition_event#")} == {
        f"acquisition_event#{pid}": "sent" for pid in paid
    }
    # The alarm watches exactly the metric the job publishes (name, namespace, dimensions).
    assert {
        (m["MetricName"], tuple((d["Name"], d["Value"]) for d in m["Dimensions"]))
        for m in published["Metrics"]
    } >= {(alarm["MetricName"], tuple((d["Name"], d["Value"]) for d in alarm["Dimensions"]))}
    assert alarm["Namespace"] == outputs["CloudWatchNamespace"]
    # The backfill of the same events from the stack's bucket: nothing new anywhere.
    assert (emails_again, opt_ins_again, stored_again) == ([], [], [])
    assert rows(warehouse, CURRENT_CONTRIBUTIONS_SQL) == contributions
    for summary in (streamed, backfilled):
        assert summary.rstrip().endswith(": holds")
    # Every AWS client assumed the role with the workers' tokens: none had static keys.
    assert metadata_server.requests
    assert {tuple(query["audience"]) for _, query, _ in metadata_server.requests} == {
        ("sts.amazonaws.com",)
    }
