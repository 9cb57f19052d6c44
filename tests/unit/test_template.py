"""template.yaml: what the stack promises (auth, queues, storage, least privilege) and that it builds.

The checks read the SAM template as written and, where SAM generates the resource that matters (IAM
roles, the HTTP API's OpenAPI body, the event source mapping), the template as samtranslator turns it
into CloudFormation, offline: no credentials, no AWS calls.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import boto3
import pytest
from cfnlint.api import lint
from cfnlint.decode.cfn_yaml import load as load_cfn_yaml
from pixverse_jobs import config
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "template.yaml"
REGION = "us-east-1"

FUNCTIONS = (
    "SubmitFunction",
    "SubmitterFunction",
    "WebhookFunction",
    "MediaCopyFunction",
    "ReconcileFunction",
    "CallbackBufferFunction",
    "DeadlineFunction",
)

# action -> the resources it may touch, in the notation of `_resource_names`.
TABLE = "JobsTable.Arn"
SIGNING_SECRET = "Ref:WebhookSigningSecret"
GATEWAY_KEY_SECRET = (
    "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${GatewayApiKeySecretName}-??????"
)
BUCKET_OBJECTS = "${MediaBucket.Arn}/*"
# Images from S3 and uploads: POST /uploads' objects, and each bucket of the InputBuckets parameter.
UPLOAD_OBJECTS = "${MediaBucket.Arn}/uploads/*"
INPUT_BUCKET_OBJECTS = "each of arn:${AWS::Partition}:s3:::${Buckets}/*"
# The stack's own bus, or the one EventBusName names: never any other bus.
EVENT_BUS_ARN = json.dumps(
    {
        "Fn::If": [
            "CreateEventBus",
            {"Fn::GetAtt": ["EventBus", "Arn"]},
            {"Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/${EventBusName}"},
        ]
    },
    sort_keys=True,
)
EXPECTED_GRANTS: dict[str, dict[str, set[str]]] = {
    "SubmitFunction": {
        "dynamodb:PutItem": {TABLE},
        "dynamodb:UpdateItem": {TABLE},
        "dynamodb:GetItem": {TABLE},
        # Frees the Idempotency-Key of a job that could not be recorded.
        "dynamodb:DeleteItem": {TABLE},
        "dynamodb:Query": {"${JobsTable.Arn}/index/by_owner_shard"},
        # GET /jobs fills a page of index keys with the jobs themselves.
        "dynamodb:BatchGetItem": {TABLE},
        # Admission: the job is queued for the submitter; no gateway key, no signing secret. A job
        # with deadline_seconds is watched (the deadline queue); a cancelled job's event is asked
        # of the copier.
        "sqs:SendMessage": {"SubmitQueue.Arn", "DeadlineQueue.Arn", "CopyQueue.Arn"},
        # POST /jobs/{job_id}/replay publishes an ended job's event again.
        "sns:Publish": {"Ref:EventsTopic"},
        # Presigned download URLs are authorized against the role that signs them; s3:// image
        # inputs are checked (HeadObject, the first bytes) at POST /jobs.
        "s3:GetObject": {BUCKET_OBJECTS},
        "s3:GetObject if HasInputBuckets": {INPUT_BUCKET_OBJECTS},
        # POST /uploads' presigned PUTs, authorized against this role.
        "s3:PutObject": {UPLOAD_OBJECTS},
        # POST /jobs/{job_id}/replay puts the final event on the bus again.
        "events:PutEvents": {EVENT_BUS_ARN},
    },
    "SubmitterFunction": {
        "dynamodb:GetItem": {TABLE},
        # The claim, the outcome; the gateway slots of GatewayMaxInFlight (PutItem, BatchGetItem).
        "dynamodb:UpdateItem": {TABLE},
        "dynamodb:PutItem": {TABLE},
        "dynamodb:BatchGetItem": {TABLE},
        # A job put back to wait (re-sent with a delay), and the failed event asked of the copier.
        "sqs:SendMessage": {"SubmitQueue.Arn", "CopyQueue.Arn"},
        "secretsmanager:GetSecretValue": {SIGNING_SECRET, GATEWAY_KEY_SECRET},
        # The presigned GET of an s3:// image input the gateway receives.
        "s3:GetObject": {UPLOAD_OBJECTS},
        "s3:GetObject if HasInputBuckets": {INPUT_BUCKET_OBJECTS},
    },
    "WebhookFunction": {
        "dynamodb:UpdateItem": {TABLE},
        # Copy requests, and the callbacks a throttled table could not take (the callback buffer).
        "sqs:SendMessage": {"CopyQueue.Arn", "CallbackBufferQueue.Arn"},
        "secretsmanager:GetSecretValue": {SIGNING_SECRET},
        # pixverse.job.progress events, only when the ProgressEvents parameter is true.
        "sns:Publish if PublishProgress": {"Ref:EventsTopic"},
        "events:PutEvents if PublishProgress": {EVENT_BUS_ARN},
    },
    "MediaCopyFunction": {
        "dynamodb:GetItem": {TABLE},
        "dynamodb:UpdateItem": {TABLE},
        "s3:PutObject": {BUCKET_OBJECTS},
        # The sha256 tag: inline on PutObject, or PutObjectTagging after CompleteMultipartUpload.
        "s3:PutObjectTagging": {BUCKET_OBJECTS},
        "s3:AbortMultipartUpload": {BUCKET_OBJECTS},
        # The copies of a job cancelled while they were made.
        "s3:DeleteObject": {BUCKET_OBJECTS},
        "sns:Publish": {"Ref:EventsTopic"},
        "events:PutEvents": {EVENT_BUS_ARN},
        # The backoff of a transiently failed copy.
        "sqs:ChangeMessageVisibility": {"CopyQueue.Arn"},
    },
    "ReconcileFunction": {
        "dynamodb:Query": {"${JobsTable.Arn}/index/unfinished_by_check"},
        "dynamodb:UpdateItem": {TABLE},
        # The unfinished index holds keys only: the candidates are read whole.
        "dynamodb:BatchGetItem": {TABLE},
        # Copy requests, and ACCEPTED jobs whose submit message went missing.
        "sqs:SendMessage": {"CopyQueue.Arn", "SubmitQueue.Arn"},
        "secretsmanager:GetSecretValue": {GATEWAY_KEY_SECRET},
    },
    # The webhook's CallbackProcessor, later: no secret (the callbacks were verified before they
    # were buffered), and its own queue only to postpone a callback the table still refuses.
    "CallbackBufferFunction": {
        "dynamodb:UpdateItem": {TABLE},
        "sqs:SendMessage": {"CopyQueue.Arn"},
        "sqs:ChangeMessageVisibility": {"CallbackBufferQueue.Arn"},
        "sns:Publish if PublishProgress": {"Ref:EventsTopic"},
        "events:PutEvents if PublishProgress": {EVENT_BUS_ARN},
    },
    # Ends a job past its deadline_seconds: the job, its deadline message again (a deadline past
    # SQS's 15-minute delay), the cancelled event asked of the copier.
    "DeadlineFunction": {
        "dynamodb:GetItem": {TABLE},
        "dynamodb:UpdateItem": {TABLE},
        "sqs:SendMessage": {"DeadlineQueue.Arn", "CopyQueue.Arn"},
    },
}
BASIC_EXECUTION = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"


class _AnyString(str):
    def __eq__(self, other: object) -> bool:
        return isinstance(other, str)

    __hash__ = str.__hash__


ANY_STRING = _AnyString()
SQS_EXECUTION = "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole"
# Added by SAM for `Tracing: !Ref Tracing`: the runtime's trace segments. SAM adds it whatever
# the parameter says, since it cannot evaluate a Ref; it grants X-Ray writes only.
XRAY_WRITE = "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess"
EXPECTED_MANAGED_POLICIES = {
    "SubmitFunction": {BASIC_EXECUTION, XRAY_WRITE},
    "SubmitterFunction": {BASIC_EXECUTION, SQS_EXECUTION, XRAY_WRITE},
    "WebhookFunction": {BASIC_EXECUTION, XRAY_WRITE},
    # Added by SAM for the SQS event source: receive/delete/attributes, which the poller needs.
    "MediaCopyFunction": {BASIC_EXECUTION, SQS_EXECUTION, XRAY_WRITE},
    "ReconcileFunction": {BASIC_EXECUTION, XRAY_WRITE},
    "CallbackBufferFunction": {BASIC_EXECUTION, SQS_EXECUTION, XRAY_WRITE},
    "DeadlineFunction": {BASIC_EXECUTION, SQS_EXECUTION, XRAY_WRITE},
}

WEBHOOK_ROUTE = ("post", "/webhooks/pixazo/{job_id}")
WEBHOOK_OTHER_METHODS = ("any", "/webhooks/pixazo/{job_id}")
EXPECTED_ROUTES = {
    ("post", "/jobs"): "SubmitFunction",
    ("get", "/jobs/{job_id}"): "SubmitFunction",
    ("get", "/jobs"): "SubmitFunction",
    # Other methods reach the functions, which answer 405 with Allow.
    ("any", "/jobs"): "SubmitFunction",
    ("any", "/jobs/{job_id}"): "SubmitFunction",
    ("post", "/jobs/{job_id}/cancel"): "SubmitFunction",
    ("post", "/jobs/{job_id}/replay"): "SubmitFunction",
    ("any", "/jobs/{job_id}/cancel"): "SubmitFunction",
    ("any", "/jobs/{job_id}/replay"): "SubmitFunction",
    WEBHOOK_ROUTE: "WebhookFunction",
    WEBHOOK_OTHER_METHODS: "WebhookFunction",
    # Images from S3 and uploads.
    ("post", "/uploads"): "SubmitFunction",
    ("any", "/uploads"): "SubmitFunction",
}


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def sam_template() -> dict[str, Any]:
    """template.yaml as written, short tags (!Ref, !Sub, !GetAtt) decoded to their long form."""
    # The JSON round trip turns cfn-lint's line-tracking node types into plain dicts and strs.
    template: dict[str, Any] = json.loads(json.dumps(load_cfn_yaml(str(TEMPLATE_PATH))))
    return template


@pytest.fixture(scope="module")
def cfn_template(sam_template: dict[str, Any]) -> dict[str, Any]:
    """template.yaml translated by SAM into plain CloudFormation, the way CloudFormation would."""
    template = copy.deepcopy(sam_template)
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(key), str):
                # `sam build` / `sam package` replace local paths with S3 locations before the
                # transform runs; the translator accepts nothing else.
                properties[key] = f"s3://artifacts/{properties[key]}"
    translator = Translator({}, Parser(), boto_session=boto3.session.Session(region_name=REGION))
    result: dict[str, Any] = translator.translate(template, parameter_values={}, get_managed_policy_map=lambda: {})
    return result


def _resources_of_type(template: Mapping[str, Any], resource_type: str) -> dict[str, Any]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == resource_type}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _resource_name(resource: Any) -> str:
    """A readable, comparable name for a policy Resource entry (string or intrinsic)."""
    if isinstance(resource, str):
        return resource
    if "Fn::GetAtt" in resource:
        target = resource["Fn::GetAtt"]
        return ".".join(target) if isinstance(target, list) else target
    if "Ref" in resource:
        return f"Ref:{resource['Ref']}"
    if "Fn::Split" in resource:
        return "each of " + _resource_name(resource["Fn::Split"][1])
    if "Fn::Sub" in resource:
        sub = resource["Fn::Sub"]
        return sub if isinstance(sub, str) else sub[0]
    return json.dumps(resource, sort_keys=True)


def _role_grants(cfn_template: Mapping[str, Any], function: str) -> dict[str, set[str]]:
    """Every Allow action of the function's generated role's inline policies -> its resources."""
    role = cfn_template["Resources"][f"{function}Role"]
    grants: dict[str, set[str]] = {}
    for policy in role["Properties"].get("Policies", []):
        for entry in _as_list(policy["PolicyDocument"]["Statement"]):
            condition, statement = "", entry
            if "Fn::If" in entry:
                # A statement granted only under a condition: recorded as "action if Condition".
                name, statement, otherwise = entry["Fn::If"]
                assert otherwise == {"Ref": "AWS::NoValue"}, f"{function}: conditional statement has an else branch"
                condition = f" if {name}"
            assert statement["Effect"] == "Allow", f"{function}: unexpected {statement['Effect']} statement"
            for action in _as_list(statement["Action"]):
                resources = {_resource_name(r) for r in _as_list(statement["Resource"])}
                grants.setdefault(action + condition, set()).update(resources)
    return grants


# The flags word of a .pyc (PEP 552): bit 0 hash-based, bit 1 check the source.
PYC_UNCHECKED_HASH = 0b01


def _pyc_flags(path: Path) -> int:
    return int.from_bytes(path.read_bytes()[4:8], "little")


def _lambda_python() -> str | None:
    """The Python 3.13 the build uses for bytecode, as scripts/find_python.sh finds it, if any."""
    found = subprocess.run([str(ROOT / "scripts" / "find_python.sh")], capture_output=True, text=True, check=False)
    python = found.stdout.strip()
    if found.returncode != 0 or not python:
        return None
    version = subprocess.run(
        [python, "-c", "import sys; print(sys.version_info[:2] == (3, 13))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return python if version.stdout.strip() == "True" else None


def _wheel_tags(wheel_file: Path) -> list[str]:
    lines = wheel_file.read_text(encoding="utf-8").splitlines()
    return [line.split(":", 1)[1].strip() for line in lines if line.startswith("Tag:")]


def _runs_on_lambda(tag: str) -> bool:
    """Whether a wheel tag (python-abi-platform) fits the python3.13 / arm64 runtime."""
    python, abi, platform = tag.split("-")
    if platform == "any":
        return abi == "none"
    return "aarch64" in platform and (abi in ("cp313", "abi3") or (abi == "none" and python.startswith("py3")))


# ---------------------------------------------------------------- lint


def test_cfn_lint_template_reports_no_errors_or_warnings() -> None:
    matches = lint(TEMPLATE_PATH.read_text(encoding="utf-8"), regions=[REGION])

    findings = [f"{m.rule.id} line {m.linenumber}: {m.message}" for m in matches if m.rule.id[0] in ("E", "W")]
    assert findings == []


def test_cfn_lint_broken_template_reports_error() -> None:
    # Guards the test above: the API must actually lint, SAM transform included.
    broken = TEMPLATE_PATH.read_text(encoding="utf-8").replace("Runtime: python3.13", "Runtime: python3.7")

    matches = lint(broken, regions=[REGION])

    assert any(m.rule.id.startswith("E") for m in matches)


# ---------------------------------------------------------------- functions and layer


@pytest.mark.parametrize("function", FUNCTIONS)
def test_function_runtime_is_python313_on_arm64(cfn_template: dict[str, Any], function: str) -> None:
    properties = cfn_template["Resources"][function]["Properties"]

    assert properties["Runtime"] == "python3.13"
    assert properties["Architectures"] == ["arm64"]


@pytest.mark.parametrize("function", FUNCTIONS)
def test_function_uses_shared_layer_built_by_makefile(sam_template: dict[str, Any], function: str) -> None:
    resource = sam_template["Resources"][function]
    layers = resource["Properties"].get("Layers", sam_template["Globals"]["Function"]["Layers"])

    assert {"Ref": "SharedLayer"} in layers
    assert resource["Metadata"]["BuildMethod"] == "makefile"
    assert (ROOT / resource["Properties"]["CodeUri"] / "Makefile").is_file()


def test_shared_layer_targets_function_runtime_and_architecture(sam_template: dict[str, Any]) -> None:
    layer = sam_template["Resources"]["SharedLayer"]

    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
    assert layer["Metadata"] == {"BuildMethod": "makefile", "BuildArchitecture": "arm64"}


@pytest.mark.parametrize("function", FUNCTIONS)
def test_function_environment_names_are_read_by_config(cfn_template: dict[str, Any], function: str) -> None:
    # One source of truth: a name the template sets but config never reads is a typo.
    known = {v for k, v in vars(config).items() if k.isupper() and isinstance(v, str)}
    variables = cfn_template["Resources"][function]["Properties"]["Environment"]["Variables"]

    unknown = {name for name in variables if name not in known and not name.startswith("POWERTOOLS_")}
    assert unknown == set()


def test_gateway_key_is_never_an_environment_variable(cfn_template: dict[str, Any]) -> None:
    for function in FUNCTIONS:
        variables = cfn_template["Resources"][function]["Properties"]["Environment"]["Variables"]

        assert "PIXAZO_API_KEY" not in variables
    submitter_variables = cfn_template["Resources"]["SubmitterFunction"]["Properties"]["Environment"]["Variables"]
    assert submitter_variables["PIXAZO_API_KEY_SECRET"] == {"Ref": "GatewayApiKeySecretName"}


# ---------------------------------------------------------------- HTTP API


def _when(value: Any, use_jwt: bool) -> Any:
    """``value`` with the template's UseJwt condition decided."""
    if isinstance(value, dict) and "Fn::If" in value:
        name, when_true, when_false = value["Fn::If"]
        assert name == "UseJwt"
        return _when(when_true if use_jwt else when_false, use_jwt)
    return value


def _http_routes(cfn_template: Mapping[str, Any], use_jwt: bool) -> dict[tuple[str, str], dict[str, Any]]:
    """(method, path) -> {function, authorization, authorizer, payload} of every ApiGatewayV2 route."""
    resources = cfn_template["Resources"]
    routes: dict[tuple[str, str], dict[str, Any]] = {}
    for route in _resources_of_type(cfn_template, "AWS::ApiGatewayV2::Route").values():
        properties = route["Properties"]
        assert properties["ApiId"] == {"Ref": "HttpApi"}
        integration_id = properties["Target"]["Fn::Sub"].removeprefix("integrations/${").removesuffix("}")
        integration = resources[integration_id]["Properties"]
        method, path = properties["RouteKey"].split(" ", 1)
        routes[(method.lower(), path)] = {
            "function": integration["IntegrationUri"]["Fn::GetAtt"][0],
            "integration": integration["IntegrationType"],
            "payload": integration["PayloadFormatVersion"],
            "authorization": _when(properties.get("AuthorizationType", "NONE"), use_jwt),
            "authorizer": _when(properties.get("AuthorizerId", {"Ref": "AWS::NoValue"}), use_jwt),
        }
    return routes


def test_http_api_routes_reach_expected_functions(cfn_template: dict[str, Any]) -> None:
    routes = _http_routes(cfn_template, use_jwt=False)

    assert {route: spec["function"] for route, spec in routes.items()} == EXPECTED_ROUTES
    assert {spec["integration"] for spec in routes.values()} == {"AWS_PROXY"}


@pytest.mark.parametrize("route", sorted(set(EXPECTED_ROUTES) - {WEBHOOK_ROUTE, WEBHOOK_OTHER_METHODS}))
def test_job_route_requires_iam_by_default(cfn_template: dict[str, Any], route: tuple[str, str]) -> None:
    spec = _http_routes(cfn_template, use_jwt=False)[route]

    assert spec["authorization"] == "AWS_IAM"
    assert spec["authorizer"] == {"Ref": "AWS::NoValue"}


@pytest.mark.parametrize("route", sorted(set(EXPECTED_ROUTES) - {WEBHOOK_ROUTE, WEBHOOK_OTHER_METHODS}))
def test_job_route_uses_jwt_authorizer_in_jwt_mode(cfn_template: dict[str, Any], route: tuple[str, str]) -> None:
    spec = _http_routes(cfn_template, use_jwt=True)[route]

    assert spec["authorization"] == "JWT"
    assert spec["authorizer"] == {"Ref": "JwtAuthorizer"}


def test_jwt_authorizer_takes_issuer_and_audience_parameters(cfn_template: dict[str, Any]) -> None:
    authorizer = cfn_template["Resources"]["JwtAuthorizer"]

    assert authorizer["Condition"] == "UseJwt"
    assert authorizer["Properties"]["AuthorizerType"] == "JWT"
    assert authorizer["Properties"]["JwtConfiguration"] == {
        "Issuer": {"Ref": "JwtIssuer"},
        "Audience": {"Fn::Split": [",", {"Ref": "JwtAudience"}]},
    }
    assert cfn_template["Conditions"]["UseJwt"] == {"Fn::Equals": [{"Ref": "AuthMode"}, "jwt"]}
    assert cfn_template["Parameters"]["AuthMode"]["Default"] == "iam"


@pytest.mark.parametrize("use_jwt", [False, True])
def test_webhook_route_has_no_authorizer(cfn_template: dict[str, Any], use_jwt: bool) -> None:
    spec = _http_routes(cfn_template, use_jwt)[WEBHOOK_ROUTE]

    assert spec["authorization"] == "NONE"
    assert spec["authorizer"] == {"Ref": "AWS::NoValue"}


def test_http_api_uses_payload_format_2(cfn_template: dict[str, Any]) -> None:
    assert {spec["payload"] for spec in _http_routes(cfn_template, use_jwt=False).values()} == {"2.0"}


def test_http_api_may_invoke_each_routed_function(cfn_template: dict[str, Any]) -> None:
    # A function may hold several permissions (SubmitFunction: /jobs* and /uploads); one must match.
    permissions: dict[str, list[tuple[str, str, str]]] = {}
    for p in _resources_of_type(cfn_template, "AWS::Lambda::Permission").values():
        if p["Properties"]["Principal"] == "apigateway.amazonaws.com":
            source = p["Properties"]["SourceArn"]["Fn::Sub"].split("${HttpApi}/", 1)[1]
            stage, allowed_method, allowed_path = source.split("/", 2)
            permissions.setdefault(p["Properties"]["FunctionName"]["Ref"], []).append(
                (stage, allowed_method, allowed_path)
            )

    for (method, path), spec in _http_routes(cfn_template, use_jwt=False).items():
        concrete = path.replace("{job_id}", "job_1").lstrip("/")
        assert any(
            stage == "*" and allowed_method in ("*", method.upper()) and fnmatch.fnmatchcase(concrete, allowed_path)
            for stage, allowed_method, allowed_path in permissions[spec["function"]]
        ), (method, path)


@pytest.mark.parametrize("function", ["SubmitFunction", "WebhookFunction"])
def test_api_function_timeout_fits_http_api_limit(cfn_template: dict[str, Any], function: str) -> None:
    # HTTP API gives up on an integration after 30 s; a longer Lambda would run on unobserved.
    assert cfn_template["Resources"][function]["Properties"]["Timeout"] < 30


# ---------------------------------------------------------------- copy queue


def test_copy_queue_visibility_timeout_covers_six_copier_timeouts(cfn_template: dict[str, Any]) -> None:
    queue = cfn_template["Resources"]["CopyQueue"]["Properties"]
    copier_timeout = cfn_template["Resources"]["MediaCopyFunction"]["Properties"]["Timeout"]

    assert queue["VisibilityTimeout"] >= 6 * copier_timeout


def test_copy_queue_redrives_to_dead_letter_queue(cfn_template: dict[str, Any]) -> None:
    resources = cfn_template["Resources"]
    redrive = resources["CopyQueue"]["Properties"]["RedrivePolicy"]

    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["CopyDeadLetterQueue", "Arn"]}
    # One parameter sets the queue's receive count and tells the copier which receive is its last.
    assert redrive["maxReceiveCount"] == {"Ref": "CopyMaxReceiveCount"}
    copier_env = resources["MediaCopyFunction"]["Properties"]["Environment"]["Variables"]
    assert copier_env["COPY_MAX_RECEIVE_COUNT"] == {"Ref": "CopyMaxReceiveCount"}
    # A dead letter keeps its original enqueue time: the DLQ must hold it longer than the queue did.
    assert (
        resources["CopyDeadLetterQueue"]["Properties"]["MessageRetentionPeriod"]
        > resources["CopyQueue"]["Properties"]["MessageRetentionPeriod"]
    )


def test_copy_event_source_reports_batch_item_failures(cfn_template: dict[str, Any]) -> None:
    mappings = _resources_of_type(cfn_template, "AWS::Lambda::EventSourceMapping")

    sources = {_resource_name(m["Properties"]["EventSourceArn"]): m["Properties"] for m in mappings.values()}
    assert set(sources) == {"CopyQueue.Arn", "CallbackBufferQueue.Arn", "SubmitQueue.Arn", "DeadlineQueue.Arn"}
    deadline = sources["DeadlineQueue.Arn"]
    assert deadline["FunctionName"] == {"Ref": "DeadlineFunction"}
    assert deadline["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    mapping = sources["CopyQueue.Arn"]
    assert mapping["FunctionName"] == {"Ref": "MediaCopyFunction"}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    submit = sources["SubmitQueue.Arn"]
    assert submit["FunctionName"] == {"Ref": "SubmitterFunction"}
    assert submit["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert submit["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "SubmitMaxConcurrency"}}


def test_submit_queue_outlives_the_submitter_and_has_a_watched_dead_letter_queue(cfn_template: dict[str, Any]) -> None:
    resources = cfn_template["Resources"]
    queue = resources["SubmitQueue"]["Properties"]
    # Lambda's advice for an SQS event source: a visibility timeout of six times the function's.
    assert queue["VisibilityTimeout"] >= 6 * resources["SubmitterFunction"]["Properties"]["Timeout"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["SubmitDeadLetterQueue", "Arn"]}
    alarm = resources["SubmitDeadLetterAlarm"]["Properties"]
    assert alarm["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["SubmitDeadLetterQueue", "QueueName"]}


# ---------------------------------------------------------------- callback buffer


def test_callback_buffer_event_source_reports_failures_at_small_concurrency(cfn_template: dict[str, Any]) -> None:
    mappings = _resources_of_type(cfn_template, "AWS::Lambda::EventSourceMapping")
    (mapping,) = [
        m["Properties"]
        for m in mappings.values()
        if m["Properties"]["EventSourceArn"] == {"Fn::GetAtt": ["CallbackBufferQueue", "Arn"]}
    ]

    assert mapping["FunctionName"] == {"Ref": "CallbackBufferFunction"}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    # A throttled table is why the messages are there: the drain must not add much load to it.
    # SQS event sources take MaximumConcurrency from 2 to 1000.
    assert 2 <= mapping["ScalingConfig"]["MaximumConcurrency"] <= 5


def test_callback_buffer_queue_redrives_to_a_watched_dead_letter_queue(cfn_template: dict[str, Any]) -> None:
    resources = cfn_template["Resources"]
    queue = resources["CallbackBufferQueue"]["Properties"]
    consumer_timeout = resources["CallbackBufferFunction"]["Properties"]["Timeout"]

    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["CallbackBufferDeadLetterQueue", "Arn"]}
    assert queue["VisibilityTimeout"] >= 6 * consumer_timeout
    assert (
        resources["CallbackBufferDeadLetterQueue"]["Properties"]["MessageRetentionPeriod"]
        > queue["MessageRetentionPeriod"]
    )
    alarmed = {
        _resource_name(d["Value"])
        for alarm in _resources_of_type(cfn_template, "AWS::CloudWatch::Alarm").values()
        for d in alarm["Properties"].get("Dimensions", [])
        if alarm["Properties"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
    }
    assert "CallbackBufferDeadLetterQueue.QueueName" in alarmed
    webhook_env = resources["WebhookFunction"]["Properties"]["Environment"]["Variables"]
    assert webhook_env["CALLBACK_BUFFER_QUEUE_URL"] == {"Ref": "CallbackBufferQueue"}


@pytest.mark.parametrize(
    "queue", ["CopyQueue", "CopyDeadLetterQueue", "CallbackBufferQueue", "CallbackBufferDeadLetterQueue"]
)
def test_queue_is_encrypted_at_rest(cfn_template: dict[str, Any], queue: str) -> None:
    assert cfn_template["Resources"][queue]["Properties"]["SqsManagedSseEnabled"] is True


# ---------------------------------------------------------------- least privilege


@pytest.mark.parametrize("function", FUNCTIONS)
def test_function_role_grants_only_needed_actions(cfn_template: dict[str, Any], function: str) -> None:
    assert _role_grants(cfn_template, function) == EXPECTED_GRANTS[function]


@pytest.mark.parametrize("function", FUNCTIONS)
def test_function_role_managed_policies_are_execution_roles_only(cfn_template: dict[str, Any], function: str) -> None:
    role = cfn_template["Resources"][f"{function}Role"]["Properties"]

    assert set(role["ManagedPolicyArns"]) == EXPECTED_MANAGED_POLICIES[function]


def test_function_roles_are_generated_per_function(cfn_template: dict[str, Any]) -> None:
    roles = _resources_of_type(cfn_template, "AWS::IAM::Role")

    assert set(roles) == {f"{function}Role" for function in FUNCTIONS}


# ---------------------------------------------------------------- storage and secrets


def test_media_bucket_blocks_public_access(cfn_template: dict[str, Any]) -> None:
    bucket = cfn_template["Resources"]["MediaBucket"]["Properties"]

    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert bucket["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]


def test_media_bucket_encrypts_by_default(cfn_template: dict[str, Any]) -> None:
    rules = cfn_template["Resources"]["MediaBucket"]["Properties"]["BucketEncryption"][
        "ServerSideEncryptionConfiguration"
    ]

    algorithms = {rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] for rule in rules}
    assert algorithms and algorithms <= {"AES256", "aws:kms", "aws:kms:dsse"}


def test_media_bucket_policy_denies_insecure_transport(cfn_template: dict[str, Any]) -> None:
    policy = cfn_template["Resources"]["MediaBucketPolicy"]["Properties"]

    assert policy["Bucket"] == {"Ref": "MediaBucket"}
    denials = [
        s
        for s in policy["PolicyDocument"]["Statement"]
        if s["Effect"] == "Deny"
        and s["Principal"] == "*"
        and s["Action"] in ("s3:*", ["s3:*"])
        and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
    ]
    assert len(denials) == 1
    assert {_resource_name(r) for r in _as_list(denials[0]["Resource"])} == {
        "MediaBucket.Arn",
        BUCKET_OBJECTS,
    }


def test_media_bucket_aborts_incomplete_multipart_uploads(cfn_template: dict[str, Any]) -> None:
    rules = cfn_template["Resources"]["MediaBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]

    aborts = [r for r in rules if r["Status"] == "Enabled" and "AbortIncompleteMultipartUpload" in r]
    assert len(aborts) == 1
    assert 1 <= aborts[0]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] <= 7
    assert "Prefix" not in aborts[0] and "Filter" not in aborts[0]


def test_jobs_table_has_point_in_time_recovery_and_ttl(cfn_template: dict[str, Any]) -> None:
    table = cfn_template["Resources"]["JobsTable"]["Properties"]

    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["TimeToLiveSpecification"]["Enabled"] is True
    assert table["TimeToLiveSpecification"]["AttributeName"]
    assert table["KeySchema"] == [{"AttributeName": "job_id", "KeyType": "HASH"}]


@pytest.mark.parametrize("resource", ["JobsTable", "MediaBucket"])
def test_stateful_resource_is_retained_on_delete(cfn_template: dict[str, Any], resource: str) -> None:
    assert cfn_template["Resources"][resource]["DeletionPolicy"] == "Retain"
    assert cfn_template["Resources"][resource]["UpdateReplacePolicy"] == "Retain"


def test_webhook_signing_secret_is_generated_by_stack(cfn_template: dict[str, Any]) -> None:
    secret = cfn_template["Resources"]["WebhookSigningSecret"]["Properties"]

    assert "SecretString" not in secret
    assert secret["GenerateSecretString"]["PasswordLength"] >= 32


@pytest.mark.parametrize("function", ["SubmitFunction", "WebhookFunction"])
def test_signing_secret_reaches_signer_and_verifier(cfn_template: dict[str, Any], function: str) -> None:
    variables = cfn_template["Resources"][function]["Properties"]["Environment"]["Variables"]

    assert variables[config.WEBHOOK_SECRET_ARN] == {"Ref": "WebhookSigningSecret"}


def test_outputs_name_api_topic_bucket_and_table(cfn_template: dict[str, Any]) -> None:
    outputs = cfn_template["Outputs"]

    assert outputs["EventsTopicArn"]["Value"] == {"Ref": "EventsTopic"}
    assert outputs["MediaBucketName"]["Value"] == {"Ref": "MediaBucket"}
    assert outputs["JobsTableName"]["Value"] == {"Ref": "JobsTable"}
    assert "${HttpApi}.execute-api" in outputs["ApiUrl"]["Value"]["Fn::Sub"]


# ---------------------------------------------------------------- sam build


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sam_build_layer_holds_package_and_dependencies(tmp_path: Path) -> None:
    venv_bin = Path(sys.executable).parent
    sam = venv_bin / "sam"
    if not sam.is_file():
        pytest.skip(f"sam executable not found next to {sys.executable}")
    build_dir = tmp_path / "build"
    env = {
        **os.environ,
        # The Makefiles run `$(PYTHON) -m pip`: the venv's pip, whatever python3 is on PATH.
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHON": sys.executable,
        "SAM_CLI_TELEMETRY": "0",
    }

    started = time.monotonic()
    lambda_python = _lambda_python()
    if lambda_python is not None:
        env["LAMBDA_PYTHON"] = lambda_python
    result = subprocess.run(
        [str(sam), "build", "--template-file", str(TEMPLATE_PATH), "--build-dir", str(build_dir)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )
    elapsed = time.monotonic() - started

    assert result.returncode == 0, f"sam build failed after {elapsed:.0f}s:\n{result.stdout}\n{result.stderr}"
    layer = build_dir / "SharedLayer" / "python"
    assert (layer / "pixverse_jobs" / "__init__.py").is_file()
    for dependency in ("httpx", "aws_lambda_powertools", "boto3"):
        assert (layer / dependency).is_dir(), f"{dependency} missing from the layer"
    # Bytecode only for the runtime's Python (the Makefiles add it when a python3.13 is found), and
    # hash-based unchecked: Lambda unpacks every file dated 1980, so timestamp .pyc would be stale.
    bytecode = list(build_dir.rglob("*.pyc"))
    foreign_bytecode = [p for p in bytecode if ".cpython-313." not in p.name]
    assert foreign_bytecode == [], "bytecode of the build machine's Python in the artifacts"
    if _lambda_python() is not None:
        assert len(list(layer.rglob("*.pyc"))) > 500, "the layer ships without bytecode"
        checked = [p for p in bytecode if _pyc_flags(p) != PYC_UNCHECKED_HASH]
        assert checked == [], f"bytecode that Lambda would find stale: {checked[:5]}"
    foreign = [
        f"{wheel.parent.name}: {tag}"
        for wheel in layer.glob("*.dist-info/WHEEL")
        for tag in _wheel_tags(wheel)
        if not _runs_on_lambda(tag)
    ]
    assert foreign == [], "wheels not built for arm64 / CPython 3.13"
    for function in FUNCTIONS:
        artifacts = {p.name for p in (build_dir / function).iterdir()} - {"__pycache__"}
        assert "app.py" in artifacts
        # Python modules only: no function ships a package of its own (pydantic included).
        assert all(name.endswith(".py") for name in artifacts), f"{function} ships {sorted(artifacts)}"
        cached = {p.name for p in (build_dir / function).glob("__pycache__/*")}
        assert cached <= {"app.cpython-313.pyc"}, f"{function} ships {sorted(cached)}"


# ---------------------------------------------------------------- reconciler and alarms


def test_reconciler_runs_on_a_schedule(sam_template: dict[str, Any]) -> None:
    reconciler = sam_template["Resources"]["ReconcileFunction"]["Properties"]

    assert reconciler["Events"]["Reconcile"] == {
        "Type": "Schedule",
        "Properties": {"Schedule": {"Ref": "ReconcileSchedule"}, "Description": ANY_STRING},
    }
    # Every function writes a job's next look (at creation, on a callback), not only this one; the
    # maximum age ends jobs here and in the submitter, and caps deadline_seconds at POST.
    shared = sam_template["Globals"]["Function"]["Environment"]["Variables"]
    assert shared["MAX_JOB_AGE_SECONDS"] == {"Ref": "MaxJobAgeSeconds"}
    assert shared["RECONCILE_AFTER_SECONDS"] == {"Ref": "ReconcileAfterSeconds"}


def test_unfinished_index_is_sparse_on_its_own_attribute_and_sorted_by_next_look(cfn_template: dict[str, Any]) -> None:
    table = cfn_template["Resources"]["JobsTable"]["Properties"]
    indexes = {i["IndexName"]: i for i in table["GlobalSecondaryIndexes"]}
    types = {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}

    assert indexes["unfinished_by_check"]["KeySchema"] == [
        {"AttributeName": "unfinished", "KeyType": "HASH"},
        {"AttributeName": "check_at", "KeyType": "RANGE"},
    ]
    assert types["check_at"] == "N"  # epoch seconds, as pixverse_jobs.store writes it


def test_indexes_are_sharded_and_project_only_what_their_queries_read(cfn_template: dict[str, Any]) -> None:
    """No hot key (issue 14): neither index sits on the caller or a constant, and neither
    projects ALL (which made every status write a whole-item index write on that one key)."""
    table = cfn_template["Resources"]["JobsTable"]["Properties"]
    indexes = {i["IndexName"]: i for i in table["GlobalSecondaryIndexes"]}

    assert set(indexes) == {"by_owner_shard", "unfinished_by_check"}
    assert indexes["by_owner_shard"]["KeySchema"] == [
        {"AttributeName": "owner_shard", "KeyType": "HASH"},
        {"AttributeName": "created_at", "KeyType": "RANGE"},
    ]
    assert indexes["by_owner_shard"]["Projection"] == {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["status"]}
    assert indexes["unfinished_by_check"]["Projection"] == {"ProjectionType": "KEYS_ONLY"}
    defined = {a["AttributeName"] for a in table["AttributeDefinitions"]}
    keyed = {k["AttributeName"] for i in indexes.values() for k in i["KeySchema"]} | {"job_id"}
    assert defined == keyed  # CloudFormation refuses an attribute defined but not a key


def test_every_alarm_notifies_the_alarm_topic(cfn_template: dict[str, Any]) -> None:
    alarms = _resources_of_type(cfn_template, "AWS::CloudWatch::Alarm")

    assert alarms
    for name, alarm in alarms.items():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}], name


def test_alarms_cover_dlq_errors_throttles_and_lost_callbacks(cfn_template: dict[str, Any]) -> None:
    watched = set()
    for alarm in _resources_of_type(cfn_template, "AWS::CloudWatch::Alarm").values():
        props = alarm["Properties"]
        dimensions = {d["Name"]: _resource_name(d["Value"]) for d in props.get("Dimensions", [])}
        watched.add(
            (props["Namespace"], props["MetricName"], dimensions.get("FunctionName") or dimensions.get("QueueName"))
        )

    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "CopyDeadLetterQueue.QueueName") in watched
    for function in FUNCTIONS:
        assert ("AWS/Lambda", "Errors", f"Ref:{function}") in watched
    assert ("AWS/Lambda", "Throttles", None) in watched
    assert ("PixverseJobs", "JobsReconciled", None) in watched
    # Handled errors: a 500 the functions answer themselves never counts as a Lambda error.
    assert ("AWS/ApiGateway", "5xx", None) in watched
    assert ("PixverseJobs", "HandledErrors", None) in watched


def test_handled_errors_alarm_per_http_function_on_the_metric_the_code_emits(cfn_template: dict[str, Any]) -> None:
    from pixverse_jobs.proxy import METRIC_HANDLED_ERRORS

    watched = {
        next(d["Value"] for d in alarm["Properties"]["Dimensions"] if d["Name"] == "function")
        for alarm in _resources_of_type(cfn_template, "AWS::CloudWatch::Alarm").values()
        if alarm["Properties"]["MetricName"] == METRIC_HANDLED_ERRORS
    }
    # Powertools puts every dimension on the metric: an alarm must name the same set.
    assert watched == {"submit", "webhook"}


def test_api_server_errors_alarm_watches_this_api(cfn_template: dict[str, Any]) -> None:
    alarm = cfn_template["Resources"]["ApiServerErrorsAlarm"]["Properties"]

    assert alarm["Dimensions"] == [{"Name": "ApiId", "Value": {"Ref": "HttpApi"}}]
    assert alarm["Threshold"] == 0 and alarm["ComparisonOperator"] == "GreaterThanThreshold"


def test_service_dimension_is_the_stack_name(sam_template: dict[str, Any], cfn_template: dict[str, Any]) -> None:
    # A constant service name would let a dev stack's alarms and dashboard count prod's metrics.
    variables = sam_template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["POWERTOOLS_SERVICE_NAME"] == {"Ref": "AWS::StackName"}
    for name, alarm in _resources_of_type(cfn_template, "AWS::CloudWatch::Alarm").items():
        for dimension in alarm["Properties"].get("Dimensions", []):
            if dimension["Name"] == "service":
                assert dimension["Value"] == {"Ref": "AWS::StackName"}, name
    _, variables = cfn_template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    assert variables["Service"] == {"Ref": "AWS::StackName"}


def test_alarm_topic_is_one_cloudwatch_can_publish_to(cfn_template: dict[str, Any]) -> None:
    # CloudWatch cannot use the AWS-managed alias/aws/sns key that the events topic uses.
    topic = cfn_template["Resources"]["AlarmTopic"]["Properties"]

    assert topic.get("KmsMasterKeyId") != "alias/aws/sns"


# ---------------------------------------------------------------- dashboard and tracing


def _dashboard_body(cfn_template: Mapping[str, Any]) -> dict[str, Any]:
    text, variables = cfn_template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    for name, value in variables.items():
        text = text.replace("${" + name + "}", value if isinstance(value, str) else "stack")
    # Every other ${...} is a CloudFormation reference: any string will do to parse the JSON.
    body: dict[str, Any] = json.loads(re.sub(r"\$\{[^}]+\}", "x", text))
    return body


def test_dashboard_body_is_json_with_widgets(cfn_template: dict[str, Any]) -> None:
    body = _dashboard_body(cfn_template)

    assert len(body["widgets"]) >= 5


def test_dashboard_shows_only_metrics_the_code_emits(cfn_template: dict[str, Any]) -> None:
    text = json.dumps(_dashboard_body(cfn_template))
    names = set(re.findall(r'\["PixverseJobs", "(\w+)"', text)) | set(re.findall(r'MetricName=\\"(\w+)\\"', text))
    code = "\n".join(path.read_text() for folder in ("layers", "functions") for path in (ROOT / folder).rglob("*.py"))

    assert {"JobsAccepted", "JobsDelivered", "Callbacks", "CopyBytes", "JobsReconciled", "GatewayNotNow"} <= names
    emitted = {name for name in names if f'"{name}"' in code or ("Jobs{" in code and name.startswith("Jobs"))}
    assert emitted == names, f"dashboard metrics no code emits: {sorted(names - emitted)}"


def test_tracing_is_a_stack_parameter_for_every_function(sam_template: dict[str, Any]) -> None:
    assert sam_template["Globals"]["Function"]["Tracing"] == {"Ref": "Tracing"}
    assert set(sam_template["Parameters"]["Tracing"]["AllowedValues"]) == {"Active", "PassThrough"}


# ---------------------------------------------------------------- quotas, bounds, housekeeping


def test_no_function_reserves_concurrency(sam_template: dict[str, Any]) -> None:
    # Lambda refuses a reservation that leaves the account under 100 unreserved executions, and a new
    # account's quota can be 10: any reservation can block the deploy.
    reserving = [
        name
        for name, resource in _resources_of_type(sam_template, "AWS::Serverless::Function").items()
        if "ReservedConcurrentExecutions" in resource["Properties"]
    ]
    assert reserving == []
    assert "ReservedConcurrentExecutions" not in sam_template["Globals"]["Function"]


def test_copy_event_source_caps_concurrency_by_parameter(cfn_template: dict[str, Any]) -> None:
    mappings = _resources_of_type(cfn_template, "AWS::Lambda::EventSourceMapping")
    (mapping,) = [m for m in mappings.values() if m["Properties"]["FunctionName"] == {"Ref": "MediaCopyFunction"}]
    parameter = cfn_template["Parameters"]["CopyMaxConcurrency"]

    assert mapping["Properties"]["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "CopyMaxConcurrency"}}
    # SQS event sources take MaximumConcurrency from 2 to 1000.
    assert parameter["MinValue"] >= 2 and parameter["MaxValue"] <= 1000


def _number_parameters_read_by_config(sam_template: Mapping[str, Any]) -> dict[str, str]:
    """Number parameter -> the environment name a function reads it from."""
    found: dict[str, str] = {}
    shared = sam_template.get("Globals", {}).get("Function", {})
    for properties in [
        shared,
        *(r["Properties"] for r in _resources_of_type(sam_template, "AWS::Serverless::Function").values()),
    ]:
        for name, value in properties.get("Environment", {}).get("Variables", {}).items():
            if isinstance(value, dict) and sam_template["Parameters"].get(value.get("Ref"), {}).get("Type") == "Number":
                found[value["Ref"]] = name
    return found


def _config_refuses(name: str, value: int) -> bool:
    """Whether the settings class that reads ``name`` refuses ``value`` at start."""
    readers = [
        cls
        for cls in vars(config).values()
        if isinstance(cls, type) and hasattr(cls, "from_env") and hasattr(cls, "_fields")
    ]
    base = {key: "https://example.invalid" if "URL" in key else "x" for key in vars(config) if key.isupper()}
    base.update({config.WEBHOOK_MODE: "terminal", config.PROGRESS_EVENTS: "false", config.ALLOWED_MEDIA_HOSTS: "a.b"})
    # Numbers take their defaults, except the one under test.
    for key in [
        k for k in vars(config) if k.isupper() and k.endswith(("SECONDS", "BYTES", "COUNT", "CONCURRENCY", "SIZE"))
    ]:
        base.pop(key, None)
    refused = False
    for cls in readers:
        env = {**base, name: str(value)}
        if name == config.RECONCILE_AFTER_SECONDS:
            env[config.MAX_JOB_AGE_SECONDS] = str(max(value + 1, 86400))
        if name == config.MAX_JOB_AGE_SECONDS:
            env[config.RECONCILE_AFTER_SECONDS] = "1"
        try:
            cls.from_env(env)
        except config.ConfigurationError as exc:
            refused = refused or name in str(exc)
    return refused


def test_every_number_parameter_has_bounds(sam_template: dict[str, Any]) -> None:
    unbounded = [
        name
        for name, parameter in sam_template["Parameters"].items()
        if parameter["Type"] == "Number" and "AllowedValues" not in parameter
        if "MinValue" not in parameter or "MaxValue" not in parameter
    ]
    assert unbounded == []


def test_number_parameter_bounds_are_what_the_functions_accept(sam_template: dict[str, Any]) -> None:
    # A value CloudFormation accepts but config refuses fails the function at every start.
    parameters = _number_parameters_read_by_config(sam_template)
    assert {"MaxJobAgeSeconds", "ReconcileAfterSeconds", "MaxMediaBytes", "DownloadUrlExpirySeconds"} <= set(parameters)
    for parameter, variable in parameters.items():
        bounds = sam_template["Parameters"][parameter]
        assert not _config_refuses(variable, bounds["MaxValue"]), f"{parameter}={bounds['MaxValue']} fails {variable}"
        assert not _config_refuses(variable, bounds["MinValue"]), f"{parameter}={bounds['MinValue']} fails {variable}"


def test_download_links_do_not_outlive_the_signing_credentials(sam_template: dict[str, Any]) -> None:
    # Links are signed with the function role's temporary credentials (an hour is the shortest
    # role session); config refuses more, so the template must not offer it.
    assert sam_template["Parameters"]["DownloadUrlExpirySeconds"]["MaxValue"] <= 3600
    assert _config_refuses(config.DOWNLOAD_URL_EXPIRY_SECONDS, 3601)


def test_media_size_bound_keeps_parts_at_eight_mib(sam_template: dict[str, Any]) -> None:
    from pixverse_jobs.media import MAX_PARTS, PART_SIZE

    assert sam_template["Parameters"]["MaxMediaBytes"]["MaxValue"] == MAX_PARTS * PART_SIZE


def test_webhook_route_has_its_own_higher_throttle(sam_template: dict[str, Any]) -> None:
    stage = sam_template["Resources"]["HttpApiStage"]
    routes = stage["Properties"]["RouteSettings"]
    parameters = sam_template["Parameters"]
    webhook_route = sam_template["Resources"]["WebhookRoute"]["Properties"]["RouteKey"]

    assert routes[webhook_route]["ThrottlingRateLimit"] == {"Ref": "WebhookThrottleRate"}
    assert routes[webhook_route]["ThrottlingBurstLimit"] == {"Ref": "WebhookThrottleBurst"}
    assert parameters["WebhookThrottleRate"]["Default"] > parameters["ApiThrottleRate"]["Default"]
    assert stage["DependsOn"] == "WebhookRoute"


@pytest.mark.parametrize("function", FUNCTIONS)
def test_function_logs_to_a_group_with_retention(sam_template: dict[str, Any], function: str) -> None:
    group_id = sam_template["Resources"][function]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
    group = sam_template["Resources"][group_id]

    assert group["Type"] == "AWS::Logs::LogGroup"
    assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


@pytest.mark.parametrize("resource", ["WebhookSigningSecret", "MediaBucketPolicy"])
def test_resource_that_outlives_the_stack_is_retained(cfn_template: dict[str, Any], resource: str) -> None:
    # The signing secret signs every webhook URL in flight; the policy keeps the retained bucket TLS-only.
    assert cfn_template["Resources"][resource]["DeletionPolicy"] == "Retain"
    assert cfn_template["Resources"][resource]["UpdateReplacePolicy"] == "Retain"
