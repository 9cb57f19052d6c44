"""Least privilege, checked against what the functions really do.

Three inputs, one verdict:

* **the roles**: template.yaml translated by samtranslator (as CloudFormation would see it), each
  function's generated role expanded into statements: its inline policies with conditional
  statements evaluated for the parameters the stack ran with and every Resource resolved to a
  physical ARN, plus its AWS managed policies (whose actions are known here, see
  ``MANAGED_POLICIES``);
* **the calls**: the local stack's per-function call log (``LOCAL_AWS_CALL_LOG``, written by
  ``pixverse_local.aws.client_hooks``): function, service and API operation of every call;
* **the requests**: moto server's own request recording (``MOTO_ENABLE_RECORDING``), which carries
  what the call log lacks: the table, index, queue, topic, secret or object each request touched.

``ACTIONS_BY_OPERATION`` maps each API operation to the IAM action(s) it needs (the AWS Service
Authorization Reference); an operation missing from it fails the check, so the mapping stays
complete. ``ACTIONS_BY_PARAMETER`` adds the actions a parameter of the call needs besides (PutObject
with ``Tagging`` also needs s3:PutObjectTagging); the call log names each call's parameters and the
recording shows them as headers. The checks:

* ``calls_not_allowed``: every recorded call's actions are granted by the function's own inline
  statements. A call that only an AWS managed policy would allow is reported too: those policies
  are on the role for the Lambda platform (log delivery, the SQS event source mapping), not for the
  function's code.
* ``unused_write_grants``: every write action (anything but Get*/List*/Describe*/Query/Scan/
  Receive*/Head*) an inline statement grants was used by the function.
* ``requests_not_attributable``: resource level. The call log does not name resources and the
  recording does not name functions, so the two are joined per operation: every request must go to
  a resource the role of some function that made that operation allows, and the requests must be
  attributable to those functions with the recorded counts (Hall's condition on the bipartite graph
  function <-> request, so a function that made 1 Query on an index only another function may read
  is caught even though some function may read it).
"""

from __future__ import annotations

import base64
import itertools
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

import boto3
from pixverse_local.aws.provision import bucket_name
from pixverse_local.aws.template import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_REGION,
    CfnTemplate,
    PhysicalResource,
    Resolver,
    load_yaml,
)
from pixverse_local.stack import DEFAULT_STACK_NAME
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

# ---------------------------------------------------------------- operation -> IAM actions


@dataclass(frozen=True)
class Need:
    """One IAM action an operation needs, on the request's own resource or on its copy source."""

    action: str
    on: Literal["target", "copy_source"] = "target"


def _needs(*actions: str) -> tuple[Need, ...]:
    return tuple(Need(a) for a in actions)


# (IAM service prefix, API operation) -> the actions IAM checks for it.
ACTIONS_BY_OPERATION: dict[tuple[str, str], tuple[Need, ...]] = {
    ("dynamodb", "GetItem"): _needs("dynamodb:GetItem"),
    ("dynamodb", "PutItem"): _needs("dynamodb:PutItem"),
    ("dynamodb", "UpdateItem"): _needs("dynamodb:UpdateItem"),
    ("dynamodb", "DeleteItem"): _needs("dynamodb:DeleteItem"),
    ("dynamodb", "Query"): _needs("dynamodb:Query"),
    ("dynamodb", "Scan"): _needs("dynamodb:Scan"),
    ("dynamodb", "BatchGetItem"): _needs("dynamodb:BatchGetItem"),
    ("dynamodb", "BatchWriteItem"): _needs("dynamodb:BatchWriteItem"),
    ("dynamodb", "DescribeTable"): _needs("dynamodb:DescribeTable"),
    # A multipart upload is authorized as PutObject, part by part.
    ("s3", "PutObject"): _needs("s3:PutObject"),
    ("s3", "CreateMultipartUpload"): _needs("s3:PutObject"),
    ("s3", "UploadPart"): _needs("s3:PutObject"),
    ("s3", "CompleteMultipartUpload"): _needs("s3:PutObject"),
    ("s3", "AbortMultipartUpload"): _needs("s3:AbortMultipartUpload"),
    ("s3", "ListParts"): _needs("s3:ListMultipartUploadParts"),
    # CopyObject writes its target and reads its source.
    ("s3", "CopyObject"): (Need("s3:PutObject"), Need("s3:GetObject", on="copy_source")),
    ("s3", "UploadPartCopy"): (Need("s3:PutObject"), Need("s3:GetObject", on="copy_source")),
    ("s3", "GetObject"): _needs("s3:GetObject"),
    ("s3", "HeadObject"): _needs("s3:GetObject"),
    ("s3", "PutObjectTagging"): _needs("s3:PutObjectTagging"),
    ("s3", "GetObjectTagging"): _needs("s3:GetObjectTagging"),
    ("s3", "DeleteObject"): _needs("s3:DeleteObject"),
    ("s3", "ListObjectsV2"): _needs("s3:ListBucket"),
    ("sqs", "SendMessage"): _needs("sqs:SendMessage"),
    ("sqs", "SendMessageBatch"): _needs("sqs:SendMessage"),
    ("sqs", "ReceiveMessage"): _needs("sqs:ReceiveMessage"),
    ("sqs", "DeleteMessage"): _needs("sqs:DeleteMessage"),
    ("sqs", "DeleteMessageBatch"): _needs("sqs:DeleteMessage"),
    ("sqs", "ChangeMessageVisibility"): _needs("sqs:ChangeMessageVisibility"),
    ("sqs", "GetQueueAttributes"): _needs("sqs:GetQueueAttributes"),
    ("sns", "Publish"): _needs("sns:Publish"),
    ("sns", "PublishBatch"): _needs("sns:Publish"),
    ("secretsmanager", "GetSecretValue"): _needs("secretsmanager:GetSecretValue"),
    ("secretsmanager", "DescribeSecret"): _needs("secretsmanager:DescribeSecret"),
    # Authorized on the bus each entry names (EventBusName), "default" when it names none.
    ("events", "PutEvents"): _needs("events:PutEvents"),
}


# (IAM service prefix, API operation, API parameter) -> the actions IAM also checks when the call
# carries that parameter (S3: tags set with an object need s3:PutObjectTagging besides s3:PutObject).
ACTIONS_BY_PARAMETER: dict[tuple[str, str, str], tuple[Need, ...]] = {
    ("s3", "PutObject", "Tagging"): _needs("s3:PutObjectTagging"),
    ("s3", "CreateMultipartUpload", "Tagging"): _needs("s3:PutObjectTagging"),
    ("s3", "CopyObject", "Tagging"): _needs("s3:PutObjectTagging"),
}
# The same parameters as the HTTP headers the recording shows (header names in lower case).
_PARAMETER_HEADERS = {"x-amz-tagging": "Tagging"}


class UnmappedOperation(AssertionError):
    """A recorded operation has no entry in ACTIONS_BY_OPERATION."""


def needs_of(service: str, operation: str, parameters: Iterable[str] = ()) -> tuple[Need, ...]:
    """The IAM actions ``service`` ``operation`` needs, with ``parameters`` (the API parameter
    names the call carried); UnmappedOperation when the operation is not mapped."""
    try:
        needs = ACTIONS_BY_OPERATION[(service, operation)]
    except KeyError:
        raise UnmappedOperation(
            f"{service} {operation} has no IAM mapping: add it to ACTIONS_BY_OPERATION in tests/iam_support.py "
            "(the actions the AWS Service Authorization Reference lists for it)"
        ) from None
    extra = [n for p in sorted(parameters) for n in ACTIONS_BY_PARAMETER.get((service, operation, p), ())]
    return needs + tuple(n for n in extra if n not in needs)


def iam_parameters(service: str, operation: str, parameters: Iterable[str]) -> frozenset[str]:
    """Those of ``parameters`` that change what ``service`` ``operation`` needs."""
    return frozenset(p for p in parameters if (service, operation, p) in ACTIONS_BY_PARAMETER)


_READ_PREFIXES = ("Get", "List", "Describe", "Receive", "Head")
_READ_NAMES = frozenset({"Query", "Scan"})


def is_write(action: str) -> bool:
    """Anything but Get*/List*/Describe*/Query/Scan/Receive*/Head* (the part after the prefix)."""
    name = action.split(":", 1)[1]
    return not (name.startswith(_READ_PREFIXES) or name in _READ_NAMES)


# ---------------------------------------------------------------- managed policies


@dataclass(frozen=True)
class ManagedPolicy:
    """An AWS managed policy's Allow actions (all on ``*``) and who on the role uses them."""

    actions: tuple[str, ...]
    used_by: str


_LOGS = ("logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents")
# The policy documents as AWS publishes them (read-only lookups are not possible offline).
MANAGED_POLICIES: dict[str, ManagedPolicy] = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole": ManagedPolicy(
        _LOGS, "the Lambda runtime, which ships the function's stdout to CloudWatch Logs"
    ),
    "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole": ManagedPolicy(
        ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", *_LOGS),
        "the SQS event source mapping (Lambda's poller; the local stack's poller stands in for it)",
    ),
    # SAM adds it for `Tracing` whatever the parameter's value (it cannot evaluate a Ref).
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess": ManagedPolicy(
        (
            "xray:PutTraceSegments",
            "xray:PutTelemetryRecords",
            "xray:GetSamplingRules",
            "xray:GetSamplingTargets",
            "xray:GetSamplingStatisticSummaries",
        ),
        "the Lambda runtime's X-Ray tracing (Tracing: Active) and the X-Ray daemon beside the function",
    ),
}


# ---------------------------------------------------------------- template -> role statements


def load_sam_template(path: Path) -> dict[str, Any]:
    """template.yaml as written, short tags in their long form."""
    return load_yaml(path)


def translate(sam_template: Mapping[str, Any], region: str = DEFAULT_REGION) -> dict[str, Any]:
    """The SAM template as CloudFormation sees it after the transform, offline."""
    template = json.loads(json.dumps(sam_template))
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(key), str):
                # `sam build` replaces local paths with S3 locations before the transform.
                properties[key] = f"s3://artifacts/{properties[key]}"
    translator = Translator({}, Parser(), boto_session=boto3.session.Session(region_name=region))
    result: dict[str, Any] = translator.translate(template, parameter_values={}, get_managed_policy_map=lambda: {})
    return result


@dataclass(frozen=True)
class Statement:
    """One Allow statement of a role, Resource resolved to ARN patterns."""

    actions: tuple[str, ...]
    resources: tuple[str, ...]
    source: str  # "inline" or a managed policy ARN
    condition: str | None = None  # the template condition it is granted under (true for this run)

    def grants_action(self, action: str) -> bool:
        return any(_iam_match(pattern, action, case_sensitive=False) for pattern in self.actions)

    def grants(self, action: str, arn: str) -> bool:
        return self.grants_action(action) and any(_iam_match(p, arn) for p in self.resources)

    def describe(self) -> str:
        cond = f" if {self.condition}" if self.condition else ""
        return f"{', '.join(self.actions)} on {', '.join(self.resources)}{cond}"


def _iam_match(pattern: str, value: str, *, case_sensitive: bool = True) -> bool:
    """IAM wildcards: ``*`` any run of characters (``/`` included), ``?`` one character."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, 0 if case_sensitive else re.IGNORECASE) is not None


@dataclass
class Role:
    """A function's role: its own inline statements and the managed policies on it."""

    function: str
    inline: list[Statement]
    managed: list[Statement]
    # Conditional statements left out because their condition is false for this run.
    excluded: list[str] = field(default_factory=list)

    def granted_inline(self, action: str, arn: str | None = None) -> bool:
        return any(s.grants(action, arn) if arn is not None else s.grants_action(action) for s in self.inline)

    def managed_granting(self, action: str) -> list[str]:
        return [s.source for s in self.managed if s.grants_action(action)]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _resolver(cfn_template: Mapping[str, Any], template_path: Path, parameters: Mapping[str, Any]) -> Resolver:
    return Resolver(
        CfnTemplate(path=template_path, document=dict(cfn_template), parameters=dict(parameters)),
        stack_name=STACK_NAME,
    )


def expand_roles(
    cfn_template: Mapping[str, Any],
    functions: Iterable[str],
    *,
    template_path: Path,
    parameters: Mapping[str, Any],
    physical: Mapping[str, PhysicalResource],
) -> dict[str, Role]:
    """Each function's role as statements: conditions evaluated with ``parameters``, Resources
    resolved against ``physical`` (the local stack's resources)."""
    resolver = _resolver(cfn_template, template_path, parameters)
    for resource in physical.values():
        resolver.register(resource)
    resources = cfn_template["Resources"]
    roles: dict[str, Role] = {}
    for function in functions:
        role_ref = resources[function]["Properties"]["Role"]
        assert "Fn::GetAtt" in role_ref, f"{function}: Role {role_ref!r} is not a role of this template"
        properties = resources[role_ref["Fn::GetAtt"][0]]["Properties"]
        role = Role(function, inline=[], managed=[])
        for policy in properties.get("Policies", []):
            for entry in _as_list(policy["PolicyDocument"]["Statement"]):
                condition = None
                statement = entry
                if "Fn::If" in entry:
                    condition, when_true, when_false = entry["Fn::If"]
                    assert when_false == {"Ref": "AWS::NoValue"}, f"{function}: conditional statement with an else"
                    if not resolver.condition(condition):
                        role.excluded.append(f"{_describe_raw(when_true)} (condition {condition} is false)")
                        continue
                    statement = when_true
                role.inline.append(_statement(function, statement, resolver, "inline", condition))
        for arn in properties.get("ManagedPolicyArns", []):
            assert isinstance(arn, str), f"{function}: managed policy {arn!r} is not a plain ARN"
            if arn not in MANAGED_POLICIES:
                raise AssertionError(
                    f"{function}: managed policy {arn} is not in MANAGED_POLICIES (tests/iam_support.py); "
                    "add its actions and who on the role uses them"
                )
            role.managed.append(Statement(MANAGED_POLICIES[arn].actions, ("*",), arn))
        roles[function] = role
    return roles


def _describe_raw(statement: Mapping[str, Any]) -> str:
    return ", ".join(_as_list(statement.get("Action", [])))


def _statement(
    function: str, statement: Mapping[str, Any], resolver: Resolver, source: str, condition: str | None
) -> Statement:
    unsupported = {"NotAction", "NotResource", "Condition"} & set(statement)
    assert not unsupported, f"{function}: statement uses {sorted(unsupported)}, which this checker does not evaluate"
    assert statement.get("Effect") == "Allow", f"{function}: a {statement.get('Effect')} statement is not evaluated"
    resources = tuple(str(resolver.resolve(r)) for r in _as_list(statement["Resource"]))
    return Statement(tuple(_as_list(statement["Action"])), resources, source, condition)


# ---------------------------------------------------------------- the local stack's resources

STACK_NAME = DEFAULT_STACK_NAME  # StackProcess starts the stack with the default name


def template_parameters(template_path: Path, overrides: Mapping[str, str]) -> dict[str, Any]:
    """Parameter values as the local stack resolves them: defaults, then ``overrides``."""
    return CfnTemplate.load(template_path, overrides).parameters


def discover_physical(template_path: Path, parameters: Mapping[str, Any], endpoint: str) -> PhysicalStack:
    """The physical ids and ARNs of the template's stateful resources on the local endpoint, read
    back from it (names as the local stack gives them: ``<stack>-<LogicalId>``)."""
    template = CfnTemplate(path=template_path, document=load_yaml(template_path), parameters=dict(parameters))
    resolver = Resolver(template, stack_name=STACK_NAME)
    session = boto3.session.Session(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # the emulator's dummy credentials
        region_name=resolver.region,
    )
    ddb = session.client("dynamodb", endpoint_url=endpoint)
    sqs = session.client("sqs", endpoint_url=endpoint)
    sm = session.client("secretsmanager", endpoint_url=endpoint)
    events = session.client("events", endpoint_url=endpoint)
    physical: dict[str, PhysicalResource] = {}
    for logical_id, resource in template.resources.items():
        kind = resource.get("Type")
        if not resolver.resource_enabled(logical_id):
            continue
        name = resolver.physical_name(logical_id)
        if kind == "AWS::DynamoDB::Table":
            arn = ddb.describe_table(TableName=name)["Table"]["TableArn"]
            physical[logical_id] = PhysicalResource(logical_id, kind, name, {"Arn": arn})
        elif kind == "AWS::S3::Bucket":
            bucket = bucket_name(name)
            physical[logical_id] = PhysicalResource(logical_id, kind, bucket, {"Arn": f"arn:aws:s3:::{bucket}"})
        elif kind == "AWS::SNS::Topic":
            arn = f"arn:aws:sns:{resolver.region}:{resolver.account_id}:{name}"
            physical[logical_id] = PhysicalResource(logical_id, kind, arn, {"TopicArn": arn, "TopicName": name})
        elif kind == "AWS::SQS::Queue":
            url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            physical[logical_id] = PhysicalResource(logical_id, kind, url, {"Arn": arn, "QueueName": name})
        elif kind == "AWS::SecretsManager::Secret":
            arn = sm.describe_secret(SecretId=name)["ARN"]
            physical[logical_id] = PhysicalResource(logical_id, kind, arn, {"Id": arn})
        elif kind == "AWS::Events::EventBus":
            bus = str(resolver.resolve((resource.get("Properties") or {}).get("Name") or name))
            arn = events.describe_event_bus(Name=bus)["Arn"]
            physical[logical_id] = PhysicalResource(logical_id, kind, bus, {"Arn": arn, "Name": bus})
    secrets = {s["Name"]: s["ARN"] for s in sm.list_secrets()["SecretList"]}
    return PhysicalStack(physical, secrets, resolver.region, resolver.account_id)


@dataclass(frozen=True)
class PhysicalStack:
    """The local stack's resources, and how a request's identifiers turn into ARNs."""

    resources: dict[str, PhysicalResource]
    secret_arns: dict[str, str]  # secret name -> ARN
    region: str = DEFAULT_REGION
    account_id: str = DEFAULT_ACCOUNT_ID

    def table_arn(self, table: str) -> str:
        if table.startswith("arn:"):
            return table
        return f"arn:aws:dynamodb:{self.region}:{self.account_id}:table/{table}"

    def queue_arn(self, url: str) -> str:
        account, name = urlsplit(url).path.strip("/").split("/")[-2:]
        return f"arn:aws:sqs:{self.region}:{account}:{name}"

    def event_bus_arn(self, bus: str) -> str:
        if bus.startswith("arn:"):
            return bus
        return f"arn:aws:events:{self.region}:{self.account_id}:event-bus/{bus}"

    def secret_arn(self, secret_id: str) -> str:
        if secret_id.startswith("arn:"):
            return secret_id
        return self.secret_arns.get(secret_id, f"<unknown secret {secret_id}>")


# ---------------------------------------------------------------- recorded calls and requests


@dataclass(frozen=True)
class Call:
    function: str
    service: str
    operation: str
    # The API parameters it carried that need actions of their own (ACTIONS_BY_PARAMETER).
    parameters: frozenset[str] = frozenset()

    def describe(self) -> str:
        given = f" with {', '.join(sorted(self.parameters))}" if self.parameters else ""
        return f"{self.service} {self.operation}{given}"


def load_call_log(path: Path) -> tuple[Counter[Call], Counter[Call]]:
    """The call log as (calls, faulted calls): a faulted call was failed by the local stack before
    it was sent, so it needs the permission but never reached the emulator."""
    calls: Counter[Call] = Counter()
    faulted: Counter[Call] = Counter()
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                entry = json.loads(line)
                service, operation = entry["service"], entry["operation"]
                parameters = iam_parameters(service, operation, entry.get("parameters", ()))
                call = Call(entry["function"], service, operation, parameters)
                calls[call] += 1
                if entry.get("fault"):
                    faulted[call] += 1
    return calls, faulted


@dataclass(frozen=True)
class Request:
    """One request the emulator received: operation and the ARN(s) IAM would evaluate."""

    service: str
    operation: str
    target: str
    copy_source: str | None = None
    parameters: frozenset[str] = frozenset()  # as Call.parameters, read from the request's headers

    def resource_for(self, need: Need) -> str:
        resource = self.copy_source if need.on == "copy_source" else self.target
        assert resource is not None, f"{self.service} {self.operation}: no {need.on} recorded"
        return resource


def _iter_json_documents(text: str) -> Iterable[dict[str, Any]]:
    # moto writes an entry and its newline in two writes, so concurrent requests can leave two
    # entries on one line: decode document by document instead of line by line.
    decoder = json.JSONDecoder()
    index, end = 0, len(text)
    while True:
        while index < end and text[index].isspace():
            index += 1
        if index >= end:
            return
        try:
            document, index = decoder.raw_decode(text, index)
        except json.JSONDecodeError as exc:
            raise AssertionError(f"moto's request recording is not readable at offset {index}: {exc}") from exc
        yield document


_CREDENTIAL = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/([^/]+)/aws4_request")


def load_moto_recording(path: Path, stack: PhysicalStack, operations: set[tuple[str, str]]) -> list[Request]:
    """The recorded requests whose (service, operation) is in ``operations``, with their ARNs."""
    requests: list[Request] = []
    invocations: set[str] = set()
    for entry in _iter_json_documents(path.read_text(encoding="utf-8")):
        headers = {k.lower(): v for k, v in entry["headers"].items()}
        # botocore sends every attempt of one API call with the same invocation id: count calls,
        # not attempts, so a retried request cannot upset the attribution.
        invocation = headers.get("amz-sdk-invocation-id")
        if invocation is not None:
            if invocation in invocations:
                continue
            invocations.add(invocation)
        if "X-Amz-Signature=" in urlsplit(entry["url"]).query:
            # A presigned URL used by its holder (a caller's upload PUT, the gateway's GET of an
            # input, a download): no function made it, so no call of the log can match it. S3
            # authorizes it against the role that signed it: the run's READS_ / WRITES_USED_OUTSIDE_
            # THE_CALL_LOG allowances name those grants, and the drive uses each such URL.
            continue
        found = _CREDENTIAL.search(headers.get("authorization", "") + " " + unquote(entry["url"]))
        if found is None:
            continue  # not an SDK request (the emulator's own control API)
        service = found.group(2)
        request = _classify(service, entry, headers, stack, operations)
        if request is not None:
            requests.append(request)
    return requests


def _body(entry: Mapping[str, Any]) -> str:
    raw = entry.get("body") or ""
    return base64.b64decode(raw).decode("utf-8") if entry.get("body_encoded") else str(raw)


def _classify(
    service: str,
    entry: Mapping[str, Any],
    headers: Mapping[str, str],
    stack: PhysicalStack,
    operations: set[tuple[str, str]],
) -> Request | None:
    if service == "s3":
        return _classify_s3(entry, headers, operations)
    target = headers.get("x-amz-target")
    if target:
        operation = target.rsplit(".", 1)[1]
        if (service, operation) not in operations:
            return None
        body = json.loads(_body(entry) or "{}")
    else:
        form = dict(parse_qsl(_body(entry)))
        operation = form.get("Action", "")
        if (service, operation) not in operations:
            return None
        body = form
    if service == "dynamodb":
        if "RequestItems" in body:  # BatchGetItem / BatchWriteItem: the functions name one table
            (table,) = body["RequestItems"]
            return Request(service, operation, stack.table_arn(table))
        arn = stack.table_arn(body["TableName"])
        return Request(service, operation, f"{arn}/index/{body['IndexName']}" if "IndexName" in body else arn)
    if service == "sqs":
        return Request(service, operation, stack.queue_arn(body["QueueUrl"]))
    if service == "sns":
        return Request(service, operation, body.get("TopicArn") or body.get("TargetArn") or "<no topic>")
    if service == "secretsmanager":
        return Request(service, operation, stack.secret_arn(body["SecretId"]))
    if service == "events":  # the functions put one entry per call
        (bus,) = {entry.get("EventBusName") or "default" for entry in body["Entries"]}
        return Request(service, operation, stack.event_bus_arn(bus))
    raise UnmappedOperation(f"{service} {operation}: the recording parser does not know this service's resources")


def _classify_s3(
    entry: Mapping[str, Any], headers: Mapping[str, str], operations: set[tuple[str, str]]
) -> Request | None:
    parts = urlsplit(entry["url"])
    bucket, _, key = parts.path.lstrip("/").partition("/")
    if not key:
        return None  # bucket-level requests: none of the functions make them
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    subresources = set(query) - {"x-id"}
    method = entry["method"]
    copy_source = headers.get("x-amz-copy-source")
    operation: str | None = None
    if method == "PUT" and copy_source:
        operation = "UploadPartCopy" if "uploadId" in query else "CopyObject"
    elif method in ("PUT", "GET") and "tagging" in subresources:
        operation = "PutObjectTagging" if method == "PUT" else "GetObjectTagging"
    elif method == "PUT" and {"partNumber", "uploadId"} <= subresources:
        operation = "UploadPart"
    elif method == "POST" and "uploads" in subresources:
        operation = "CreateMultipartUpload"
    elif method == "POST" and "uploadId" in subresources:
        operation = "CompleteMultipartUpload"
    elif method == "DELETE" and "uploadId" in subresources:
        operation = "AbortMultipartUpload"
    elif method == "GET" and "uploadId" in subresources:
        operation = "ListParts"
    elif not subresources:
        operation = {"PUT": "PutObject", "GET": "GetObject", "HEAD": "HeadObject", "DELETE": "DeleteObject"}.get(method)
    if operation is None or ("s3", operation) not in operations:
        return None
    source = None
    if copy_source:
        source_path = unquote(copy_source).lstrip("/").split("?", 1)[0]
        source = f"arn:aws:s3:::{source_path}"
    given = iam_parameters("s3", operation, (p for h, p in _PARAMETER_HEADERS.items() if h in headers))
    return Request("s3", operation, f"arn:aws:s3:::{bucket}/{unquote(key)}", source, given)


# ---------------------------------------------------------------- the checks


def _count(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


def calls_not_allowed(roles: Mapping[str, Role], calls: Mapping[Call, int]) -> list[str]:
    """Action level: each call whose actions the function's inline statements do not grant."""
    problems: list[str] = []
    for call, n in sorted(calls.items(), key=lambda item: (item[0].function, item[0].describe())):
        role = roles.get(call.function)
        if role is None:
            problems.append(f"{call.function} called {call.describe()} but has no role in the template")
            continue
        for need in needs_of(call.service, call.operation, call.parameters):
            if role.granted_inline(need.action):
                continue
            managed = role.managed_granting(need.action)
            if managed:
                users = "; ".join(MANAGED_POLICIES[arn].used_by for arn in managed)
                problems.append(
                    f"{call.function} called {call.describe()} ({_count(n)}), which needs "
                    f"{need.action}: only the managed policy {', '.join(a.rsplit('/', 1)[1] for a in managed)} "
                    f"allows it, and that is on the role for {users}, not for the function's code"
                )
            else:
                granted = sorted({a for s in role.inline for a in s.actions})
                problems.append(
                    f"{call.function} called {call.describe()} ({_count(n)}), which needs "
                    f"{need.action}: its role does not allow it (inline grants: {', '.join(granted) or 'none'})"
                )
    return problems


def used_actions(calls: Iterable[Call]) -> dict[str, set[str]]:
    """function -> the IAM actions its recorded calls needed."""
    used: dict[str, set[str]] = {}
    for call in calls:
        used.setdefault(call.function, set()).update(
            n.action for n in needs_of(call.service, call.operation, call.parameters)
        )
    return used


def unused_write_grants(roles: Mapping[str, Role], calls: Iterable[Call]) -> list[str]:
    """Write actions an inline statement grants that the function never needed during the run."""
    used = used_actions(calls)
    problems: list[str] = []
    for function, role in sorted(roles.items()):
        mine = used.get(function, set())
        for statement in role.inline:
            for action in statement.actions:
                if is_write(action) and not any(_iam_match(action, u, case_sensitive=False) for u in mine):
                    problems.append(
                        f"{function}'s role grants {action} (a write) on {', '.join(statement.resources)}, "
                        "which the function never used during the run"
                    )
    return problems


def unused_read_grants(roles: Mapping[str, Role], calls: Iterable[Call]) -> dict[str, list[str]]:
    """function -> read actions granted inline and never needed by a recorded call."""
    used = used_actions(calls)
    unused: dict[str, list[str]] = {}
    for function, role in sorted(roles.items()):
        mine = used.get(function, set())
        for statement in role.inline:
            for action in statement.actions:
                if not is_write(action) and not any(_iam_match(action, u, case_sensitive=False) for u in mine):
                    unused.setdefault(function, []).append(action)
    return unused


def _allowed(role: Role, request: Request) -> bool:
    needs = needs_of(request.service, request.operation, request.parameters)
    return all(role.granted_inline(n.action, request.resource_for(n)) for n in needs)


def requests_not_attributable(
    roles: Mapping[str, Role], calls: Mapping[Call, int], requests: Sequence[Request]
) -> list[str]:
    """Resource level (see the module docstring): per operation, every request must go to a resource
    some calling function's role allows, and the calls must be matchable to the requests."""
    problems: list[str] = []
    by_operation: dict[tuple[str, str], Counter[str]] = {}
    for call, n in calls.items():
        by_operation.setdefault((call.service, call.operation), Counter())[call.function] += n
    for (service, operation), counts in sorted(by_operation.items()):
        seen = [r for r in requests if (r.service, r.operation) == (service, operation)]
        callers = sorted(counts)
        where = Counter(_where(r) for r in seen)
        refused = Counter(_where(r) for r in seen if not any(_allowed(roles[f], r) for f in callers if f in roles))
        for resource, n in sorted(refused.items()):
            problems.append(
                f"{service} {operation} on {resource} ({_count(n)}): no role of the functions that made this "
                f"call ({', '.join(callers)}) allows it there"
            )
        if len(seen) != sum(counts.values()):
            problems.append(
                f"{service} {operation}: the call log has {sum(counts.values())} calls "
                f"({', '.join(f'{f} {n}' for f, n in sorted(counts.items()))}) but the emulator received "
                f"{len(seen)} requests, so they cannot be attributed"
            )
            continue
        for size in range(1, len(callers) + 1):
            for group in itertools.combinations(callers, size):
                made = sum(counts[f] for f in group)
                reachable = [r for r in seen if any(_allowed(roles[f], r) for f in group if f in roles)]
                if made > len(reachable):
                    problems.append(
                        f"{service} {operation}: {' + '.join(group)} made {made} calls, but only "
                        f"{len(reachable)} of the requests went where "
                        f"{'its role allows' if size == 1 else 'their roles allow'}; requests by resource: "
                        + ", ".join(f"{arn} x{n}" for arn, n in sorted(where.items()))
                    )
    return problems


def _where(request: Request) -> str:
    given = f" with {', '.join(sorted(request.parameters))}" if request.parameters else ""
    return request.target + given + (f" (copy of {request.copy_source})" if request.copy_source else "")


def calls_table(calls: Mapping[Call, int]) -> str:
    """The recorded calls as ``function  service Operation  count`` lines."""
    rows = sorted(calls.items(), key=lambda item: (item[0].function, item[0].describe()))
    return "\n".join(f"{c.function:<18} {c.describe():<40} {n:>4}" for c, n in rows)
