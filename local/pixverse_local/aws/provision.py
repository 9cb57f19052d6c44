"""Create the template's stateful resources in an AWS endpoint (moto server locally).

Every table, bucket, topic, event bus, queue and secret is created from its own ``Properties`` in template.yaml,
in dependency order (a queue's dead-letter queue before the queue), and registered with the
:class:`~pixverse_local.aws.template.Resolver` so later references resolve to real physical ids.

Physical names are ``<stack>-<LogicalId>`` unless the template names the resource (bucket names are
lower-cased). Against an endpoint that already holds them (``AWS_ENDPOINT_URL`` given twice)
creation is idempotent: existing resources are reused and reconfigured from the template; a table
whose key schema differs is an error that asks for another stack name.

Properties the local stack does not apply are logged once each, never silently dropped. One
deviation on purpose: bucket-policy statements conditioned on ``aws:SecureTransport`` are not applied,
because the local endpoint is plain HTTP and moto enforces bucket policies.

Functions are not created in the endpoint (they run in this process), but their quotas are checked
first, as Lambda checks them when CloudFormation creates the functions: every
``ReservedConcurrentExecutions`` must leave at least 100 of the account's concurrent executions
unreserved, or ``PutFunctionConcurrency`` refuses it ("Specified ReservedConcurrentExecutions for
function decreases account's UnreservedConcurrentExecution below its minimum value of [100]").
The account's quota is ``LOCAL_ACCOUNT_CONCURRENCY`` (default 1000, AWS's default; new accounts may
have 10, where any reservation is refused).
https://docs.aws.amazon.com/lambda/latest/api/API_PutFunctionConcurrency.html
https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import string
from collections.abc import Callable, Mapping
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from pixverse_local.aws.lambda_runtime import (
    ACCOUNT_CONCURRENCY_ENV,
    DEFAULT_ACCOUNT_CONCURRENCY,
    MINIMUM_UNRESERVED_CONCURRENCY,
)
from pixverse_local.aws.template import (
    SERVERLESS_FUNCTION,
    CfnTemplate,
    PhysicalResource,
    Resolver,
    TemplateError,
    merge_globals,
    reserved_concurrency,
    resource_dependencies,
)
from pixverse_local.errors import LocalStackError

LOG = logging.getLogger(__name__)

TABLE = "AWS::DynamoDB::Table"
BUCKET = "AWS::S3::Bucket"
BUCKET_POLICY = "AWS::S3::BucketPolicy"
TOPIC = "AWS::SNS::Topic"
QUEUE = "AWS::SQS::Queue"
SECRET = "AWS::SecretsManager::Secret"  # noqa: S105 - a resource type, not a password
LOG_GROUP = "AWS::Logs::LogGroup"
EVENT_BUS = "AWS::Events::EventBus"

# Queue properties that are SQS attributes of the same name.
_QUEUE_ATTRIBUTES = (
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
    "FifoQueue",
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
    "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds",
    "SqsManagedSseEnabled",
    "RedrivePolicy",
    "RedriveAllowPolicy",
)
_TOPIC_ATTRIBUTES = ("DisplayName", "KmsMasterKeyId", "FifoTopic", "ContentBasedDeduplication")


LAMBDA_FUNCTION = "AWS::Lambda::Function"


class ProvisionError(Exception):
    """A resource could not be created as the template defines it."""


class ReservedConcurrencyError(ProvisionError, LocalStackError):
    """A function's ReservedConcurrentExecutions is more than the account's quota leaves to reserve."""


class Provisioner:
    """Creates the template's stateful resources through one boto3 session and endpoint."""

    def __init__(
        self,
        template: CfnTemplate,
        resolver: Resolver,
        *,
        session: boto3.session.Session,
        endpoint_url: str | None,
        account_concurrency: int = DEFAULT_ACCOUNT_CONCURRENCY,
    ) -> None:
        self.template = template
        self.resolver = resolver
        self._session = session
        self._endpoint_url = endpoint_url
        self.account_concurrency = account_concurrency
        self._clients: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        """One client per service, pointed at the endpoint."""
        if service not in self._clients:
            self._clients[service] = self._session.client(
                service,  # type: ignore[call-overload]
                endpoint_url=self._endpoint_url,
                region_name=self.resolver.region,
            )
        return self._clients[service]

    # -------------------------------------------------------------------------------- orchestration
    def provision(self, extra_secrets: Mapping[str, str] | None = None) -> dict[str, PhysicalResource]:
        """Create every supported resource; return logical id -> physical resource.

        ``extra_secrets`` (name -> SecretString) are secrets the template only names, such as the
        gateway API key whose name is a parameter.
        """
        check_reserved_concurrency(self.function_reservations(), self.account_concurrency)
        creators: dict[str, Callable[[str, dict[str, Any]], PhysicalResource | None]] = {
            TABLE: self._table,
            BUCKET: self._bucket,
            BUCKET_POLICY: self._bucket_policy,
            TOPIC: self._topic,
            QUEUE: self._queue,
            SECRET: self._secret,
            LOG_GROUP: self._log_group,
            EVENT_BUS: self._event_bus,
        }
        for name, value in (extra_secrets or {}).items():
            arn = self._put_secret(name, value, description="local stack", overwrite=True)
            LOG.info("secret %s ready", name)
            LOG.debug("secret %s arn %s", name, arn)
        for logical_id in self.creation_order():
            resource = self.template.resources[logical_id]
            resource_type = str(resource.get("Type"))
            creator = creators.get(resource_type)
            if creator is None:
                LOG.debug("%s (%s) is not a stateful resource; not provisioned", logical_id, resource_type)
                continue
            if not self.resolver.resource_enabled(logical_id):
                LOG.info("%s skipped: its Condition is false", logical_id)
                continue
            properties = self.resolver.resolve(resource.get("Properties") or {})
            try:
                physical = creator(logical_id, properties)
            except (ClientError, BotoCoreError) as exc:
                raise ProvisionError(f"cannot create {logical_id} ({resource_type}): {exc}") from exc
            if physical is not None:
                self.resolver.register(physical)
                LOG.info("%s ready: %s", logical_id, physical.ref)
        return dict(self.resolver.physical)

    def function_reservations(self) -> dict[str, int]:
        """ReservedConcurrentExecutions of the template's (enabled) functions, in template order."""
        reservations: dict[str, int] = {}
        for logical_id, resource in self.template.resources.items():
            resource_type = resource.get("Type")
            if resource_type not in (SERVERLESS_FUNCTION, LAMBDA_FUNCTION):
                continue
            if not self.resolver.resource_enabled(logical_id):
                continue
            properties = resource.get("Properties") or {}
            if resource_type == SERVERLESS_FUNCTION:
                properties = merge_globals(self.template.function_globals, properties)
            value = self.resolver.resolve(
                {"ReservedConcurrentExecutions": properties.get("ReservedConcurrentExecutions")}
            )
            reserved = reserved_concurrency(logical_id, value)
            if reserved is not None:
                reservations[logical_id] = reserved
        return reservations

    def creation_order(self) -> list[str]:
        """Logical ids with every resource after the resources it references (template order kept)."""
        resources = self.template.resources
        ids = set(resources)
        dependencies = {lid: resource_dependencies(res, ids) for lid, res in resources.items()}
        order: list[str] = []
        state: dict[str, str] = {}

        def visit(logical_id: str, path: tuple[str, ...]) -> None:
            if state.get(logical_id) == "done":
                return
            if state.get(logical_id) == "visiting":
                raise TemplateError(f"circular dependency: {' -> '.join((*path, logical_id))}")
            state[logical_id] = "visiting"
            for dependency in sorted(dependencies[logical_id], key=list(resources).index):
                visit(dependency, (*path, logical_id))
            state[logical_id] = "done"
            order.append(logical_id)

        for logical_id in resources:
            visit(logical_id, ())
        return order

    def _ignored(self, logical_id: str, properties: Mapping[str, Any], handled: set[str]) -> None:
        for name in sorted(set(properties) - handled):
            LOG.info("%s: property %s is not emulated locally", logical_id, name)

    # -------------------------------------------------------------------------------- DynamoDB
    def _table(self, logical_id: str, p: dict[str, Any]) -> PhysicalResource:
        ddb = self.client("dynamodb")
        name = str(p.get("TableName") or self.resolver.physical_name(logical_id))
        kwargs: dict[str, Any] = {
            "TableName": name,
            "KeySchema": p["KeySchema"],
            "AttributeDefinitions": p["AttributeDefinitions"],
            "BillingMode": p.get("BillingMode", "PROVISIONED"),
        }
        for key in ("ProvisionedThroughput", "GlobalSecondaryIndexes", "LocalSecondaryIndexes", "Tags"):
            if key in p:
                kwargs[key] = p[key]
        if "ProvisionedThroughput" in kwargs:
            kwargs["ProvisionedThroughput"] = _numbers_as_int(kwargs["ProvisionedThroughput"])
        for index in kwargs.get("GlobalSecondaryIndexes", []):
            if kwargs["BillingMode"] == "PAY_PER_REQUEST":
                index.pop("ProvisionedThroughput", None)
            elif "ProvisionedThroughput" in index:
                index["ProvisionedThroughput"] = _numbers_as_int(index["ProvisionedThroughput"])
        if "StreamSpecification" in p:
            kwargs["StreamSpecification"] = {"StreamEnabled": True, **p["StreamSpecification"]}
        if "SSESpecification" in p:
            sse = p["SSESpecification"]
            kwargs["SSESpecification"] = {"Enabled": _flag(sse.get("SSEEnabled", False))}
            if "SSEType" in sse:
                kwargs["SSESpecification"]["SSEType"] = sse["SSEType"]
            if "KMSMasterKeyId" in sse:
                kwargs["SSESpecification"]["KMSMasterKeyId"] = sse["KMSMasterKeyId"]
        if "TableClass" in p:
            kwargs["TableClass"] = p["TableClass"]
        if "DeletionProtectionEnabled" in p:
            kwargs["DeletionProtectionEnabled"] = _flag(p["DeletionProtectionEnabled"])
        try:
            description = ddb.create_table(**kwargs)["TableDescription"]
        except ClientError as exc:
            if _code(exc) != "ResourceInUseException":
                raise
            description = ddb.describe_table(TableName=name)["Table"]
            if _key_names(description["KeySchema"]) != _key_names(kwargs["KeySchema"]):
                raise ProvisionError(
                    f"table {name} already exists with key {description['KeySchema']}, but the template "
                    f"says {kwargs['KeySchema']}: use another --stack-name"
                ) from exc
        ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})

        ttl = p.get("TimeToLiveSpecification")
        if ttl and _flag(ttl.get("Enabled", False)):
            current = ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
            if current.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
                ddb.update_time_to_live(
                    TableName=name,
                    TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
                )
        pitr = p.get("PointInTimeRecoverySpecification")
        if pitr is not None:
            ddb.update_continuous_backups(
                TableName=name,
                PointInTimeRecoverySpecification={
                    "PointInTimeRecoveryEnabled": _flag(pitr.get("PointInTimeRecoveryEnabled", False))
                },
            )
        self._ignored(
            logical_id,
            p,
            {
                "TableName", "KeySchema", "AttributeDefinitions", "BillingMode", "ProvisionedThroughput",
                "GlobalSecondaryIndexes", "LocalSecondaryIndexes", "Tags", "StreamSpecification",
                "SSESpecification", "TableClass", "DeletionProtectionEnabled", "TimeToLiveSpecification",
                "PointInTimeRecoverySpecification",
            },
        )  # fmt: skip
        attributes = {"Arn": description["TableArn"]}
        if description.get("LatestStreamArn"):
            attributes["StreamArn"] = description["LatestStreamArn"]
        return PhysicalResource(logical_id, TABLE, name, attributes)

    # -------------------------------------------------------------------------------- S3
    def _bucket(self, logical_id: str, p: dict[str, Any]) -> PhysicalResource:
        s3 = self.client("s3")
        name = str(p.get("BucketName") or bucket_name(self.resolver.physical_name(logical_id)))
        region = self.resolver.region
        kwargs: dict[str, Any] = {"Bucket": name}
        if region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            s3.create_bucket(**kwargs)
        except ClientError as exc:
            if _code(exc) != "BucketAlreadyOwnedByYou":
                raise
        if "BucketEncryption" in p:
            rules = [
                {("ApplyServerSideEncryptionByDefault" if k == "ServerSideEncryptionByDefault" else k): v
                 for k, v in rule.items()}
                for rule in p["BucketEncryption"]["ServerSideEncryptionConfiguration"]
            ]  # fmt: skip
            s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules})
        if "PublicAccessBlockConfiguration" in p:
            block = {k: _flag(v) for k, v in p["PublicAccessBlockConfiguration"].items()}
            s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=block)
        if "OwnershipControls" in p:
            s3.put_bucket_ownership_controls(Bucket=name, OwnershipControls=p["OwnershipControls"])
        if "VersioningConfiguration" in p:
            s3.put_bucket_versioning(
                Bucket=name, VersioningConfiguration={"Status": p["VersioningConfiguration"]["Status"]}
            )
        if "LifecycleConfiguration" in p:
            rules = [_lifecycle_rule(rule) for rule in p["LifecycleConfiguration"]["Rules"]]
            s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": rules})
        if "CorsConfiguration" in p:
            s3.put_bucket_cors(
                Bucket=name,
                CORSConfiguration={"CORSRules": [_cors_rule(r) for r in p["CorsConfiguration"]["CorsRules"]]},
            )
        if "Tags" in p:
            s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": p["Tags"]})
        self._ignored(
            logical_id,
            p,
            {
                "BucketName", "BucketEncryption", "PublicAccessBlockConfiguration", "OwnershipControls",
                "VersioningConfiguration", "LifecycleConfiguration", "CorsConfiguration", "Tags",
            },
        )  # fmt: skip
        attributes = {
            "Arn": f"arn:aws:s3:::{name}",
            "DomainName": f"{name}.s3.amazonaws.com",
            "RegionalDomainName": f"{name}.s3.{region}.amazonaws.com",
            "DualStackDomainName": f"{name}.s3.dualstack.{region}.amazonaws.com",
            "WebsiteURL": f"http://{name}.s3-website-{region}.amazonaws.com",
        }
        return PhysicalResource(logical_id, BUCKET, name, attributes)

    def _bucket_policy(self, logical_id: str, p: dict[str, Any]) -> PhysicalResource:
        """Apply the policy without its TLS-only statements: the local endpoint is plain HTTP.

        moto evaluates bucket policies, so a ``Deny`` on ``aws:SecureTransport: false`` would
        refuse every local request.
        """
        bucket = str(p["Bucket"])
        document = dict(p["PolicyDocument"])
        statements = document.get("Statement") or []
        if isinstance(statements, dict):
            statements = [statements]
        kept = [s for s in statements if "aws:securetransport" not in json.dumps(s.get("Condition", {})).lower()]
        for dropped in statements:
            if dropped not in kept:
                LOG.info(
                    "%s: statement %s (TLS only) not applied: the local endpoint is plain HTTP",
                    logical_id,
                    dropped.get("Sid", "?"),
                )
        if kept:
            document["Statement"] = kept
            self.client("s3").put_bucket_policy(Bucket=bucket, Policy=json.dumps(document))
        return PhysicalResource(logical_id, BUCKET_POLICY, bucket)

    # -------------------------------------------------------------------------------- SNS
    def _topic(self, logical_id: str, p: dict[str, Any]) -> PhysicalResource:
        name = str(p.get("TopicName") or self.resolver.physical_name(logical_id))
        if _flag(p.get("FifoTopic", False)) and not name.endswith(".fifo"):
            name += ".fifo"
        attributes = {key: _as_attribute(p[key]) for key in _TOPIC_ATTRIBUTES if key in p}
        kwargs: dict[str, Any] = {"Name": name, "Attributes": attributes}
        if "Tags" in p:
            kwargs["Tags"] = p["Tags"]
        arn = str(self.client("sns").create_topic(**kwargs)["TopicArn"])
        self._ignored(logical_id, p, {"TopicName", "Tags", *_TOPIC_ATTRIBUTES})
        return PhysicalResource(logical_id, TOPIC, arn, {"TopicArn": arn, "TopicName": name})

    # -------------------------------------------------------------------------------- EventBridge
    def _event_bus(self, logical_id: str, p: dict[str, Any]) -> PhysicalResource:
        """A custom bus (``Ref`` is its name, as CloudFormation gives it; ``Arn`` and ``Name``)."""
        events = self.client("events")
        name = str(p.get("Name") or self.resolver.physical_name(logical_id))
        kwargs: dict[str, Any] = {"Name": name}
        if "Description" in p:
            kwargs["Description"] = str(p["Description"])
        if "Tags" in p:
            kwargs["Tags"] = p["Tags"]
        try:
            arn = str(events.create_event_bus(**kwargs)["EventBusArn"])
        except ClientError as exc:
            if _code(exc) != "ResourceAlreadyExistsException":
                raise
            arn = str(events.describe_event_bus(Name=name)["Arn"])
        self._ignored(logical_id, p, {"Name", "Description", "Tags"})
        return PhysicalResource(logical_id, EVENT_BUS, name, {"Arn": arn, "Name": name})

    # -------------------------------------------------------------------------------- SQS
    def _queue(self, logical_id: str, p: dict[str, Any]) -> PhysicalResource:
        sqs = self.client("sqs")
        name = str(p.get("QueueName") or self.resolver.physical_name(logical_id))
        if _flag(p.get("FifoQueue", False)) and not name.endswith(".fifo"):
            name += ".fifo"
        attributes = {key: _as_attribute(p[key]) for key in _QUEUE_ATTRIBUTES if key in p}
        kwargs: dict[str, Any] = {"QueueName": name, "Attributes": attributes}
        if "Tags" in p:
            kwargs["tags"] = {tag["Key"]: tag["Value"] for tag in p["Tags"]}
        try:
            url = str(sqs.create_queue(**kwargs)["QueueUrl"])
        except ClientError as exc:
            if _code(exc) not in ("QueueAlreadyExists", "QueueNameExists"):
                raise
            url = str(sqs.get_queue_url(QueueName=name)["QueueUrl"])
            settable = {k: v for k, v in attributes.items() if k != "FifoQueue"}
            if settable:
                sqs.set_queue_attributes(QueueUrl=url, Attributes=settable)
        arn = str(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"])
        self._ignored(logical_id, p, {"QueueName", "Tags", *_QUEUE_ATTRIBUTES})
        return PhysicalResource(logical_id, QUEUE, url, {"Arn": arn, "QueueName": name, "QueueUrl": url})

    # -------------------------------------------------------------------------------- CloudWatch Logs
    def _log_group(self, logical_id: str, p: dict[str, Any]) -> PhysicalResource:
        """The group a function's LoggingConfig names (locally the functions log to stdout)."""
        logs = self.client("logs")
        name = str(p.get("LogGroupName") or self.resolver.physical_name(logical_id))
        try:
            logs.create_log_group(logGroupName=name)
        except ClientError as exc:
            if _code(exc) != "ResourceAlreadyExistsException":
                raise
        if "RetentionInDays" in p:
            logs.put_retention_policy(logGroupName=name, retentionInDays=int(p["RetentionInDays"]))
        arn = f"arn:aws:logs:{self.resolver.region}:{self.resolver.account_id}:log-group:{name}:*"
        self._ignored(logical_id, p, {"LogGroupName", "RetentionInDays"})
        return PhysicalResource(logical_id, LOG_GROUP, name, {"Arn": arn})

    # -------------------------------------------------------------------------------- Secrets Manager
    def _secret(self, logical_id: str, p: dict[str, Any]) -> PhysicalResource:
        name = str(p.get("Name") or self.resolver.physical_name(logical_id))
        if "SecretString" in p:
            value = str(p["SecretString"])
        elif "GenerateSecretString" in p:
            value = generate_secret_string(p["GenerateSecretString"])
        else:
            value = generate_secret_string({})
        arn = self._put_secret(name, value, description=str(p.get("Description", "")), overwrite=False)
        self._ignored(logical_id, p, {"Name", "SecretString", "GenerateSecretString", "Description"})
        return PhysicalResource(logical_id, SECRET, arn, {"Id": arn})

    def _put_secret(self, name: str, value: str, *, description: str, overwrite: bool) -> str:
        """Create a secret (or reuse one of that name; ``overwrite`` replaces its value)."""
        sm = self.client("secretsmanager")
        try:
            return str(sm.create_secret(Name=name, SecretString=value, Description=description)["ARN"])
        except ClientError as exc:
            if _code(exc) != "ResourceExistsException":
                raise
        if overwrite:
            sm.put_secret_value(SecretId=name, SecretString=value)
        return str(sm.describe_secret(SecretId=name)["ARN"])


# ------------------------------------------------------------------------------------------ helpers
def provision(
    template: CfnTemplate,
    resolver: Resolver,
    *,
    session: boto3.session.Session,
    endpoint_url: str | None,
    extra_secrets: Mapping[str, str] | None = None,
    account_concurrency: int = DEFAULT_ACCOUNT_CONCURRENCY,
) -> dict[str, PhysicalResource]:
    """Check the functions' quotas, create the template's stateful resources; return logical id -> resource."""
    provisioner = Provisioner(
        template, resolver, session=session, endpoint_url=endpoint_url, account_concurrency=account_concurrency
    )
    return provisioner.provision(extra_secrets)


def check_reserved_concurrency(reservations: Mapping[str, int], account_concurrency: int) -> None:
    """Refuse reservations as Lambda's PutFunctionConcurrency does, naming the function and the numbers.

    Reservations are applied in order (as CloudFormation creates the functions); the first one that
    leaves fewer than 100 unreserved executions is refused. A reservation of 0 reserves nothing.
    """
    reserved = 0
    for logical_id, executions in reservations.items():
        if executions == 0:
            continue
        unreserved = account_concurrency - reserved - executions
        if unreserved < MINIMUM_UNRESERVED_CONCURRENCY:
            raise ReservedConcurrencyError(
                f"{logical_id}: ReservedConcurrentExecutions {executions} is refused as Lambda's "
                f"PutFunctionConcurrency refuses it: it decreases the account's UnreservedConcurrentExecution "
                f"below its minimum value of [{MINIMUM_UNRESERVED_CONCURRENCY}] (account concurrency quota "
                f"{account_concurrency}, already reserved {reserved}, unreserved would be {unreserved}; "
                f"{ACCOUNT_CONCURRENCY_ENV} sets the quota)"
            )
        reserved += executions


def bucket_name(name: str) -> str:
    """An S3-valid bucket name (lower case, 3-63 of [a-z0-9.-]) derived from ``name``."""
    cleaned = re.sub(r"[^a-z0-9.-]+", "-", name.lower()).strip(".-")
    return cleaned[:63].rstrip(".-") or "bucket"


def generate_secret_string(spec: Mapping[str, Any]) -> str:
    """What ``GenerateSecretString`` gives: a random string, optionally inside a JSON template."""
    alphabet = ""
    if not _flag(spec.get("ExcludeLowercase", False)):
        alphabet += string.ascii_lowercase
    if not _flag(spec.get("ExcludeUppercase", False)):
        alphabet += string.ascii_uppercase
    if not _flag(spec.get("ExcludeNumbers", False)):
        alphabet += string.digits
    if not _flag(spec.get("ExcludePunctuation", False)):
        alphabet += string.punctuation
    if _flag(spec.get("IncludeSpace", False)):
        alphabet += " "
    excluded = set(str(spec.get("ExcludeCharacters", "")))
    alphabet = "".join(c for c in alphabet if c not in excluded)
    if not alphabet:
        raise ProvisionError("GenerateSecretString excludes every character")
    length = int(spec.get("PasswordLength", 32))
    value = "".join(secrets.choice(alphabet) for _ in range(length))
    if "SecretStringTemplate" in spec and "GenerateStringKey" in spec:
        document = json.loads(str(spec["SecretStringTemplate"]))
        document[str(spec["GenerateStringKey"])] = value
        return json.dumps(document)
    return value


def _lifecycle_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    """A CloudFormation lifecycle rule in the S3 API's shape."""
    converted: dict[str, Any] = {"Status": rule["Status"]}
    if "Id" in rule:
        converted["ID"] = rule["Id"]
    converted["Filter"] = {"Prefix": rule["Prefix"]} if "Prefix" in rule else {"Prefix": ""}
    if "AbortIncompleteMultipartUpload" in rule:
        converted["AbortIncompleteMultipartUpload"] = {
            "DaysAfterInitiation": int(rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])
        }
    if "ExpirationInDays" in rule:
        converted["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
    if "NoncurrentVersionExpirationInDays" in rule:
        converted["NoncurrentVersionExpiration"] = {"NoncurrentDays": int(rule["NoncurrentVersionExpirationInDays"])}
    ignored = set(rule) - {
        "Id", "Status", "Prefix", "AbortIncompleteMultipartUpload", "ExpirationInDays",
        "NoncurrentVersionExpirationInDays",
    }  # fmt: skip
    for name in sorted(ignored):
        LOG.info("lifecycle rule %s: %s is not emulated locally", rule.get("Id", "?"), name)
    return converted


def _cors_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    renames = {"Id": "ID", "ExposedHeaders": "ExposeHeaders", "MaxAge": "MaxAgeSeconds"}
    return {renames.get(k, k): v for k, v in rule.items()}


def _as_attribute(value: Any) -> str:
    """SQS/SNS attribute values are strings; JSON policies are serialised."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _numbers_as_int(value: Any) -> Any:
    """Digit strings (as parameters give) back to integers, for API fields typed as numbers."""
    if isinstance(value, dict):
        return {k: _numbers_as_int(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers_as_int(v) for v in value]
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


def _key_names(key_schema: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(k["AttributeName"], k["KeyType"]) for k in key_schema]


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
