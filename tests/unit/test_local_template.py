"""The local stack reads template.yaml: intrinsics, SAM globals, and resources provisioned as written."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from pixverse_local.aws.provision import Provisioner, generate_secret_string
from pixverse_local.aws.template import (
    CfnTemplate,
    FunctionSpec,
    PhysicalResource,
    Resolver,
    TemplateError,
    load_yaml,
    read_application,
)
from pixverse_local.stack import LocalStackError, MotoServer, function_environment

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"

SMALL_TEMPLATE = """
Transform: AWS::Serverless-2016-10-31
Parameters:
  Stage:
    Type: String
    Default: dev
    AllowedValues: [dev, prod]
  Prefix:
    Type: String
    Default: media
Conditions:
  IsProd: !Equals [!Ref Stage, prod]
Globals:
  Function:
    Timeout: 7
    Environment:
      Variables:
        SHARED: from-globals
        OVERRIDDEN: from-globals
Resources:
  Queue:
    Type: AWS::SQS::Queue
  Worker:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/worker
      Handler: app.handler
      Environment:
        Variables:
          OVERRIDDEN: from-function
          QUEUE_URL: !Ref Queue
      Events:
        Jobs:
          Type: SQS
          Properties:
            Queue: !GetAtt Queue.Arn
            BatchSize: 3
            FunctionResponseTypes: [ReportBatchItemFailures]
        Tick:
          Type: Schedule
          Properties:
            Schedule: rate(5 minutes)
"""


@pytest.fixture
def small(tmp_path: Path) -> CfnTemplate:
    path = tmp_path / "template.yaml"
    path.write_text(SMALL_TEMPLATE)
    return CfnTemplate.load(path)


def resolver_for(template: CfnTemplate) -> Resolver:
    resolver = Resolver(template, stack_name="s1", region="eu-west-1", account_id="111122223333")
    resolver.register(
        PhysicalResource(
            "Queue",
            "AWS::SQS::Queue",
            "http://aws/111122223333/s1-Queue",
            {"Arn": "arn:aws:sqs:eu-west-1:111122223333:s1-Queue", "QueueName": "s1-Queue"},
        )
    )
    return resolver


# ------------------------------------------------------------------------------------------ YAML
def test_short_tags_load_as_long_form_intrinsics(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        'AWSTemplateFormatVersion: "2010-09-09"\nVersion: 2010-09-09\nResources:\n  A:\n'
        "    Properties: {X: !GetAtt Queue.Arn, Y: !Sub 'a-${B}', Z: !Ref P, W: !If [C, 1, 2]}\n"
    )

    document = load_yaml(path)

    properties = document["Resources"]["A"]["Properties"]
    assert properties == {
        "X": {"Fn::GetAtt": ["Queue", "Arn"]},
        "Y": {"Fn::Sub": "a-${B}"},
        "Z": {"Ref": "P"},
        "W": {"Fn::If": ["C", 1, 2]},
    }
    assert document["Version"] == "2010-09-09"  # never a date


def test_unknown_parameter_override_raises(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(SMALL_TEMPLATE)

    with pytest.raises(TemplateError, match="Nope"):
        CfnTemplate.load(path, {"Nope": "x"})


def test_parameter_outside_allowed_values_raises(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(SMALL_TEMPLATE)

    with pytest.raises(TemplateError, match="Stage"):
        CfnTemplate.load(path, {"Stage": "qa"})


# ------------------------------------------------------------------------------------------ intrinsics
@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ({"Ref": "Prefix"}, "media"),
        ({"Ref": "AWS::Region"}, "eu-west-1"),
        ({"Ref": "AWS::AccountId"}, "111122223333"),
        ({"Ref": "AWS::StackName"}, "s1"),
        ({"Ref": "Queue"}, "http://aws/111122223333/s1-Queue"),
        ({"Fn::GetAtt": ["Queue", "QueueName"]}, "s1-Queue"),
        ({"Fn::Sub": "${Queue.Arn}/x-${AWS::Partition}.${AWS::URLSuffix}"}, (
            "arn:aws:sqs:eu-west-1:111122223333:s1-Queue/x-aws.amazonaws.com"
        )),
        ({"Fn::Sub": ["${Name}-${Prefix}", {"Name": {"Ref": "Stage"}}]}, "dev-media"),
        ({"Fn::Sub": "keep ${!Literal} as is"}, "keep ${Literal} as is"),
        ({"Fn::Join": ["/", ["a", {"Ref": "Prefix"}, "b"]]}, "a/media/b"),
        ({"Fn::Select": [1, {"Fn::Split": [",", "x,y,z"]}]}, "y"),
        ({"Fn::If": ["IsProd", "big", "small"]}, "small"),
        ({"Fn::GetAtt": ["Worker", "Arn"]}, "arn:aws:lambda:eu-west-1:111122223333:function:s1-Worker"),
    ],
)  # fmt: skip
def test_intrinsic_resolves_to_local_value(small: CfnTemplate, expression: Any, expected: Any) -> None:
    assert resolver_for(small).resolve(expression) == expected


def test_condition_follows_parameter_override(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(SMALL_TEMPLATE)
    template = CfnTemplate.load(path, {"Stage": "prod"})

    assert resolver_for(template).resolve({"Fn::If": ["IsProd", "big", "small"]}) == "big"


def test_no_value_removes_the_property(small: CfnTemplate) -> None:
    resolved = resolver_for(small).resolve(
        {"Keep": 1, "Drop": {"Ref": "AWS::NoValue"}, "L": [1, {"Ref": "AWS::NoValue"}]}
    )

    assert resolved == {"Keep": 1, "L": [1]}


def test_unsupported_intrinsic_raises_naming_it(small: CfnTemplate) -> None:
    with pytest.raises(TemplateError, match="Fn::ImportValue"):
        resolver_for(small).resolve({"Fn::ImportValue": "shared-vpc"})


def test_ref_to_unknown_name_raises(small: CfnTemplate) -> None:
    with pytest.raises(TemplateError, match="Missing"):
        resolver_for(small).resolve({"Fn::Sub": "${Missing}"})


def test_unemulated_attribute_raises_listing_available(small: CfnTemplate) -> None:
    with pytest.raises(TemplateError, match=r"Queue\.Nope.*Arn"):
        resolver_for(small).resolve({"Fn::GetAtt": ["Queue", "Nope"]})


# ------------------------------------------------------------------------------------------ SAM specs
def test_globals_merge_into_function_and_function_wins(small: CfnTemplate) -> None:
    app = read_application(small, resolver_for(small))

    worker = app.functions["Worker"]
    assert worker.environment == {
        "SHARED": "from-globals",
        "OVERRIDDEN": "from-function",
        "QUEUE_URL": "http://aws/111122223333/s1-Queue",
    }
    assert worker.timeout == 7
    assert worker.code_uri == (small.root / "functions/worker").resolve()


def test_sqs_and_schedule_events_are_read(small: CfnTemplate) -> None:
    app = read_application(small, resolver_for(small))

    (sqs,) = app.sqs_events
    assert (sqs.queue_id, sqs.batch_size, sqs.report_batch_item_failures) == ("Queue", 3, True)
    (schedule,) = app.schedules
    assert (schedule.function_id, schedule.expression, schedule.enabled) == ("Worker", "rate(5 minutes)", True)


@pytest.mark.parametrize(
    ("overrides", "job_route_kind"),
    [({}, "iam"), ({"AuthMode": "jwt", "JwtIssuer": "https://issuer.example", "JwtAudience": "app"}, "jwt")],
)
def test_real_template_routes_follow_their_auth(overrides: dict[str, str], job_route_kind: str) -> None:
    template = CfnTemplate.load(TEMPLATE, overrides)
    app = read_application(template, _resolver_with_stand_ins(template))

    routes = {route.route_key: (route.function_id, route.authorizer_kind) for route in app.routes}
    assert routes == {
        "POST /jobs": ("SubmitFunction", job_route_kind),
        "GET /jobs/{job_id}": ("SubmitFunction", job_route_kind),
        "GET /jobs": ("SubmitFunction", job_route_kind),
        "POST /jobs/{job_id}/cancel": ("SubmitFunction", job_route_kind),
        "POST /jobs/{job_id}/replay": ("SubmitFunction", job_route_kind),
        "ANY /jobs/{job_id}/cancel": ("SubmitFunction", job_route_kind),
        "ANY /jobs/{job_id}/replay": ("SubmitFunction", job_route_kind),
        "POST /webhooks/pixazo/{job_id}": ("WebhookFunction", None),
        # Other methods reach the functions, which answer 405.
        "ANY /jobs": ("SubmitFunction", job_route_kind),
        "ANY /jobs/{job_id}": ("SubmitFunction", job_route_kind),
        "ANY /webhooks/pixazo/{job_id}": ("WebhookFunction", None),
        # Images from S3 and uploads.
        "POST /uploads": ("SubmitFunction", job_route_kind),
        "ANY /uploads": ("SubmitFunction", job_route_kind),
    }


def test_real_template_integration_timeouts_are_read() -> None:
    template = CfnTemplate.load(TEMPLATE)
    app = read_application(template, _resolver_with_stand_ins(template))

    timeouts = {route.route_key: route.integration_timeout_ms for route in app.routes}
    assert timeouts["POST /jobs"] == 29000
    assert timeouts["POST /webhooks/pixazo/{job_id}"] == 10000


def test_route_with_non_lambda_integration_raises(tmp_path: Path) -> None:
    document = {
        "Resources": {
            "Api": {"Type": "AWS::ApiGatewayV2::Api", "Properties": {"ProtocolType": "HTTP"}},
            "Proxy": {
                "Type": "AWS::ApiGatewayV2::Integration",
                "Properties": {"ApiId": {"Ref": "Api"}, "IntegrationType": "HTTP_PROXY", "IntegrationUri": "https://x"},
            },
            "Route": {
                "Type": "AWS::ApiGatewayV2::Route",
                "Properties": {
                    "ApiId": {"Ref": "Api"},
                    "RouteKey": "GET /x",
                    "Target": {"Fn::Sub": "integrations/${Proxy}"},
                },
            },
        }
    }
    path = tmp_path / "template.yaml"
    path.write_text(yaml.safe_dump(document))
    template = CfnTemplate.load(path)

    with pytest.raises(TemplateError, match="AWS_PROXY"):
        read_application(template, Resolver(template, stack_name="t"))


def test_conflicting_function_environment_raises() -> None:
    def spec(name: str, value: str) -> FunctionSpec:
        return FunctionSpec(name, name, Path("."), "app.handler", 3, 128, {"TABLE": value}, ())

    with pytest.raises(LocalStackError, match="TABLE"):
        function_environment({"A": spec("A", "one"), "B": spec("B", "two")}, {})


def test_overridden_name_may_differ_between_functions() -> None:
    def spec(name: str, value: str) -> FunctionSpec:
        return FunctionSpec(name, name, Path("."), "app.handler", 3, 128, {"URL": value}, ())

    assert function_environment({"A": spec("A", "1"), "B": spec("B", "2")}, {"URL": "local"}) == {"URL": "local"}


def test_generated_secret_is_alphanumeric_of_requested_length() -> None:
    value = generate_secret_string({"PasswordLength": 64, "ExcludePunctuation": True})

    assert len(value) == 64
    assert value.isalnum()


def _resolver_with_stand_ins(template: CfnTemplate) -> Resolver:
    """A resolver whose stateful resources have made-up physical ids (no AWS needed)."""
    resolver = Resolver(template, stack_name="t")
    for logical_id, resource in template.resources.items():
        if str(resource["Type"]).startswith("AWS::Serverless"):
            continue
        attributes = {"Arn": f"arn:aws:x:us-east-1:123456789012:{logical_id}", "QueueUrl": f"url-{logical_id}"}
        resolver.register(PhysicalResource(logical_id, str(resource["Type"]), f"ref-{logical_id}", attributes))
    return resolver


# ------------------------------------------------------------------------------------------ provisioning
@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server = MotoServer()
    yield server.start()
    server.stop()


def _provision(template_path: Path, endpoint: str) -> tuple[Provisioner, CfnTemplate]:
    template = CfnTemplate.load(template_path)
    resolver = Resolver(template, stack_name=f"t-{uuid.uuid4().hex[:8]}")
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    provisioner = Provisioner(template, resolver, session=session, endpoint_url=endpoint)
    provisioner.provision({"local/gateway-key": "k"})
    return provisioner, template


def _first(template: CfnTemplate, resource_type: str, *, having: str | None = None) -> str:
    return next(
        lid
        for lid, r in template.resources.items()
        if r["Type"] == resource_type and (having is None or having in (r.get("Properties") or {}))
    )


def test_changed_template_changes_provisioned_resources(tmp_path: Path, moto_endpoint: str) -> None:
    # Given template.yaml with the table's key renamed and the copy queue's retry settings changed
    document = load_yaml(TEMPLATE)
    original = CfnTemplate.load(TEMPLATE)
    table_id = _first(original, "AWS::DynamoDB::Table")
    queue_id = _first(original, "AWS::SQS::Queue", having="RedrivePolicy")
    table = document["Resources"][table_id]["Properties"]
    hash_key = next(k["AttributeName"] for k in table["KeySchema"] if k["KeyType"] == "HASH")
    for entry in table["KeySchema"] + table["AttributeDefinitions"]:
        if entry["AttributeName"] == hash_key:
            entry["AttributeName"] = "jid"
    queue = document["Resources"][queue_id]["Properties"]
    queue["VisibilityTimeout"] = 77
    queue["RedrivePolicy"]["maxReceiveCount"] = 3
    changed = tmp_path / "template.yaml"
    changed.write_text(yaml.safe_dump(document, sort_keys=False))

    # When the local stack provisions it
    provisioner, _ = _provision(changed, moto_endpoint)

    # Then the emulator holds what the changed template says
    resources = provisioner.resolver.physical
    description = provisioner.client("dynamodb").describe_table(TableName=resources[table_id].ref)["Table"]
    assert {"AttributeName": "jid", "KeyType": "HASH"} in description["KeySchema"]
    attributes = provisioner.client("sqs").get_queue_attributes(
        QueueUrl=resources[queue_id].ref, AttributeNames=["All"]
    )["Attributes"]
    assert attributes["VisibilityTimeout"] == "77"
    assert json.loads(attributes["RedrivePolicy"])["maxReceiveCount"] == 3


def test_real_template_provisions_as_written(moto_endpoint: str) -> None:
    provisioner, template = _provision(TEMPLATE, moto_endpoint)
    resources = provisioner.resolver.physical
    ddb, sqs = provisioner.client("dynamodb"), provisioner.client("sqs")

    table_id = _first(template, "AWS::DynamoDB::Table")
    expected_table = template.resources[table_id]["Properties"]
    table = ddb.describe_table(TableName=resources[table_id].ref)["Table"]
    assert table["KeySchema"] == expected_table["KeySchema"]
    assert {i["IndexName"]: i["KeySchema"] for i in table.get("GlobalSecondaryIndexes", [])} == {
        i["IndexName"]: i["KeySchema"] for i in expected_table.get("GlobalSecondaryIndexes", [])
    }
    ttl = ddb.describe_time_to_live(TableName=resources[table_id].ref)["TimeToLiveDescription"]
    assert ttl["AttributeName"] == expected_table["TimeToLiveSpecification"]["AttributeName"]
    assert ttl["TimeToLiveStatus"] == "ENABLED"

    queue_id = _first(template, "AWS::SQS::Queue", having="RedrivePolicy")
    expected_queue = template.resources[queue_id]["Properties"]
    dlq_id = expected_queue["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
    attributes = sqs.get_queue_attributes(QueueUrl=resources[queue_id].ref, AttributeNames=["All"])["Attributes"]
    policy = json.loads(attributes["RedrivePolicy"])
    assert policy["deadLetterTargetArn"] == resources[dlq_id].attributes["Arn"]
    expected_receives = provisioner.resolver.resolve(expected_queue["RedrivePolicy"]["maxReceiveCount"])
    assert int(policy["maxReceiveCount"]) == int(expected_receives)
    assert attributes["VisibilityTimeout"] == str(expected_queue["VisibilityTimeout"])


def test_real_template_bucket_is_locked_down(moto_endpoint: str) -> None:
    provisioner, template = _provision(TEMPLATE, moto_endpoint)
    bucket_id = _first(template, "AWS::S3::Bucket")
    name = provisioner.resolver.physical[bucket_id].ref
    s3 = provisioner.client("s3")

    block = s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"]
    expected = template.resources[bucket_id]["Properties"]["PublicAccessBlockConfiguration"]
    assert block == expected
    assert name == name.lower()
    rules = s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"]


def test_provisioning_twice_against_one_endpoint_reuses_resources(tmp_path: Path, moto_endpoint: str) -> None:
    template = CfnTemplate.load(TEMPLATE)
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    stack_name = f"again-{uuid.uuid4().hex[:8]}"
    refs = []
    for _ in range(2):
        resolver = Resolver(template, stack_name=stack_name)
        Provisioner(template, resolver, session=session, endpoint_url=moto_endpoint).provision({"again/key": "k"})
        refs.append({lid: r.ref for lid, r in resolver.physical.items()})

    assert refs[0] == refs[1]


def test_real_template_bucket_accepts_local_writes_over_http(moto_endpoint: str) -> None:
    # The TLS-only policy statement would deny every request to the plain-HTTP local endpoint.
    provisioner, template = _provision(TEMPLATE, moto_endpoint)
    name = provisioner.resolver.physical[_first(template, "AWS::S3::Bucket")].ref
    s3 = provisioner.client("s3")

    s3.put_object(Bucket=name, Key="videos/x.mp4", Body=b"data")

    assert s3.get_object(Bucket=name, Key="videos/x.mp4")["Body"].read() == b"data"


def test_bucket_policy_keeps_statements_not_about_tls(tmp_path: Path, moto_endpoint: str) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(
        """
Resources:
  Bucket:
    Type: AWS::S3::Bucket
  Policy:
    Type: AWS::S3::BucketPolicy
    Properties:
      Bucket: !Ref Bucket
      PolicyDocument:
        Version: "2012-10-17"
        Statement:
          - Sid: TlsOnly
            Effect: Deny
            Principal: "*"
            Action: "s3:*"
            Resource: !Sub "${Bucket.Arn}/*"
            Condition: {Bool: {"aws:SecureTransport": "false"}}
          - Sid: NoDeletes
            Effect: Deny
            Principal: "*"
            Action: "s3:DeleteBucket"
            Resource: !GetAtt Bucket.Arn
"""
    )

    provisioner, _ = _provision(path, moto_endpoint)

    name = provisioner.resolver.physical["Bucket"].ref
    policy = json.loads(provisioner.client("s3").get_bucket_policy(Bucket=name)["Policy"])
    assert [s["Sid"] for s in policy["Statement"]] == ["NoDeletes"]


def test_first_sqs_event_source_is_the_copiers_so_the_ready_lines_queue_is_the_copy_queue() -> None:
    # The ready line's queue= (what tests and the demo send copy requests to) is the first SQS event
    # source's queue; the callback buffer's comes after it in template.yaml.
    template = CfnTemplate.load(TEMPLATE)
    app = read_application(template, _resolver_with_stand_ins(template))

    first = app.sqs_events[0]
    assert (first.function_id, first.queue_id) == ("MediaCopyFunction", "CopyQueue")


def test_sqs_event_sources_carry_their_maximum_concurrency_to_the_local_pollers() -> None:
    # Lambda runs no more invocations of a mapping at once than its ScalingConfig.MaximumConcurrency:
    # the submitter's (SubmitMaxConcurrency, 2) is what keeps a paced backlog in the queue.
    template = CfnTemplate.load(TEMPLATE)
    app = read_application(template, _resolver_with_stand_ins(template))

    limits = {event.function_id: event.maximum_concurrency for event in app.sqs_events}
    assert limits == {
        "MediaCopyFunction": 10,
        "SubmitterFunction": 2,
        "CallbackBufferFunction": 2,
        "DeadlineFunction": 5,
    }


def test_maximum_concurrency_outside_lambdas_range_is_refused(tmp_path: Path) -> None:
    from pixverse_local.aws.template import _maximum_concurrency

    assert _maximum_concurrency({"ScalingConfig": {"MaximumConcurrency": 2}}, "F.E") == 2
    assert _maximum_concurrency({}, "F.E") is None
    with pytest.raises(TemplateError, match=r"F\.E: ScalingConfig\.MaximumConcurrency must be 2 to 1000, got 1"):
        _maximum_concurrency({"ScalingConfig": {"MaximumConcurrency": 1}}, "F.E")
