"""template.yaml as the local stack reads it: short-tag YAML, parameters, SAM globals, intrinsics.

The local stack restates nothing: tables, queues, routes, event sources and environment variables all
come from the template through this module. Loading is split in two because resolution needs
physical ids that only exist once provisioning has run:

* :class:`CfnTemplate` holds the parsed document, parameter values and conditions;
* :class:`Resolver` evaluates intrinsics against those parameters, pseudo parameters and the physical
  resources registered so far (provisioning registers each resource as it creates it);
* :func:`read_application` then turns the SAM resources into plain specs (functions, HTTP routes,
  SQS and schedule event sources, layers) with every value resolved.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT_ID = "123456789012"

SERVERLESS_FUNCTION = "AWS::Serverless::Function"
SERVERLESS_HTTP_API = "AWS::Serverless::HttpApi"
SERVERLESS_LAYER = "AWS::Serverless::LayerVersion"
IMPLICIT_HTTP_API = "ServerlessHttpApi"
APIGW_API = "AWS::ApiGatewayV2::Api"
APIGW_ROUTE = "AWS::ApiGatewayV2::Route"
APIGW_INTEGRATION = "AWS::ApiGatewayV2::Integration"
APIGW_AUTHORIZER = "AWS::ApiGatewayV2::Authorizer"

# The default SAM gives Function properties the template leaves out.
_DEFAULT_TIMEOUT = 3
_DEFAULT_MEMORY = 128
_DEFAULT_SQS_BATCH = 10
# Lambda's Timeout: 1 to 900 seconds.
# https://docs.aws.amazon.com/lambda/latest/dg/configuration-timeout.html
MAX_FUNCTION_TIMEOUT_SECONDS = 900
# An HTTP API integration's TimeoutInMillis: "between 50 and 30,000 milliseconds for HTTP APIs. The
# default timeout is ... 30 seconds for HTTP APIs" (AWS::ApiGatewayV2::Integration, and the HTTP API
# quotas page: "Maximum integration timeout 30 seconds", not adjustable).
# https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-apigatewayv2-integration.html
# https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-quotas.html
MIN_INTEGRATION_TIMEOUT_MS = 50
MAX_INTEGRATION_TIMEOUT_MS = 30_000


class TemplateError(Exception):
    """The template cannot be read, or uses something the local stack does not emulate."""


class _NoValue:
    """``AWS::NoValue``: the property it stands for is removed."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()


# ------------------------------------------------------------------------------------------ loading
class CfnYamlLoader(yaml.SafeLoader):  # type: ignore[misc]
    """SafeLoader that turns CloudFormation short tags (``!Ref``, ``!Sub``...) into their long form."""


# CloudFormation reads "2010-09-09" and friends as strings, never as dates.
CfnYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct_short_tag(loader: CfnYamlLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:  # pragma: no cover - yaml has no other node kinds
        raise TemplateError(f"unexpected YAML node for !{suffix}")
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        logical_id, _, attribute = value.partition(".")
        return {"Fn::GetAtt": [logical_id, attribute]}
    return {f"Fn::{suffix}": value}


CfnYamlLoader.add_multi_constructor("!", _construct_short_tag)


def load_yaml(path: Path) -> dict[str, Any]:
    """Parse a CloudFormation/SAM YAML (or JSON) template into long-form intrinsics."""
    try:
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=CfnYamlLoader)  # noqa: S506
    except (OSError, yaml.YAMLError) as exc:
        raise TemplateError(f"cannot read template {path}: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("Resources"), dict):
        raise TemplateError(f"{path} is not a CloudFormation template (no Resources)")
    return document


# ------------------------------------------------------------------------------------------ template
@dataclass
class CfnTemplate:
    """A parsed template with its parameter values."""

    path: Path
    document: dict[str, Any]
    parameters: dict[str, Any]

    @classmethod
    def load(cls, path: str | Path, parameter_overrides: Mapping[str, str] | None = None) -> CfnTemplate:
        """Read ``path``; parameters take their template default unless overridden."""
        template_path = Path(path).resolve()
        document = load_yaml(template_path)
        overrides = dict(parameter_overrides or {})
        declared = document.get("Parameters") or {}
        unknown = sorted(set(overrides) - set(declared))
        if unknown:
            raise TemplateError(f"parameter override(s) not declared in the template: {', '.join(unknown)}")
        parameters: dict[str, Any] = {}
        for name, spec in declared.items():
            if name in overrides:
                raw: Any = overrides[name]
            elif "Default" in spec:
                raw = spec["Default"]
            else:
                raise TemplateError(f"parameter {name} has no Default and no override was given")
            allowed = spec.get("AllowedValues")
            if allowed is not None and str(raw) not in [str(a) for a in allowed]:
                raise TemplateError(f"parameter {name}={raw!r} is not one of {allowed}")
            if str(spec.get("Type", "String")).startswith(("CommaDelimitedList", "List<")):
                parameters[name] = raw if isinstance(raw, list) else [s.strip() for s in str(raw).split(",")]
            else:
                parameters[name] = str(raw)
        return cls(path=template_path, document=document, parameters=parameters)

    @property
    def root(self) -> Path:
        """Directory that CodeUri and ContentUri are relative to."""
        return self.path.parent

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return dict(self.document["Resources"])

    @property
    def conditions(self) -> dict[str, Any]:
        return dict(self.document.get("Conditions") or {})

    def resources_of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        """Resources of one type, in template order (conditions not evaluated)."""
        return {lid: r for lid, r in self.resources.items() if r.get("Type") == resource_type}

    @property
    def function_globals(self) -> dict[str, Any]:
        return dict((self.document.get("Globals") or {}).get("Function") or {})


# ------------------------------------------------------------------------------------------ resolver
@dataclass(frozen=True)
class PhysicalResource:
    """What ``Ref`` and ``Fn::GetAtt`` give for one logical id."""

    logical_id: str
    resource_type: str
    ref: str
    attributes: dict[str, str] = field(default_factory=dict)


def _references(value: Any) -> Iterator[str]:
    """Logical ids (and parameters) a value refers to through Ref, GetAtt or Sub."""
    if isinstance(value, list):
        for item in value:
            yield from _references(item)
    elif isinstance(value, dict):
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref" and isinstance(arg, str):
                yield arg
                return
            if key == "Fn::GetAtt":
                parts = arg if isinstance(arg, list) else str(arg).split(".", 1)
                yield str(parts[0])
                return
            if key == "Fn::Sub":
                text = arg[0] if isinstance(arg, list) else arg
                names = arg[1] if isinstance(arg, list) and len(arg) > 1 else {}
                for match in _SUB_VARIABLE.finditer(str(text)):
                    name = match.group(1).split(".", 1)[0]
                    if name not in names:
                        yield name
                yield from _references(names)
                return
        for item in value.values():
            yield from _references(item)


def resource_dependencies(resource: Mapping[str, Any], logical_ids: set[str]) -> set[str]:
    """Other resources one resource needs first: its references and its DependsOn."""
    depends_on = resource.get("DependsOn") or []
    if isinstance(depends_on, str):
        depends_on = [depends_on]
    found = set(_references(resource.get("Properties") or {})) | set(depends_on)
    return {name for name in found if name in logical_ids}


_SUB_VARIABLE = re.compile(r"\$\{(?!!)([^}]+)\}")
_SUB_LITERAL = re.compile(r"\$\{!")


class Resolver:
    """Evaluates intrinsic functions the way CloudFormation would for the local stack."""

    def __init__(
        self,
        template: CfnTemplate,
        *,
        stack_name: str,
        region: str = DEFAULT_REGION,
        account_id: str = DEFAULT_ACCOUNT_ID,
    ) -> None:
        self.template = template
        self.stack_name = stack_name
        self.region = region
        self.account_id = account_id
        self.physical: dict[str, PhysicalResource] = {}
        self._condition_cache: dict[str, bool] = {}

    # -- registration -------------------------------------------------------------------------
    def register(self, resource: PhysicalResource) -> None:
        """Record a provisioned resource so references to it resolve."""
        self.physical[resource.logical_id] = resource

    def physical_name(self, logical_id: str) -> str:
        """The local physical name of a resource whose template gives none: ``<stack>-<LogicalId>``."""
        return f"{self.stack_name}-{logical_id}"

    def pseudo_parameters(self) -> dict[str, Any]:
        return {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": (f"arn:aws:cloudformation:{self.region}:{self.account_id}:stack/{self.stack_name}/local"),
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NotificationARNs": [],
            "AWS::NoValue": NO_VALUE,
        }

    # -- conditions ---------------------------------------------------------------------------
    def condition(self, name: str) -> bool:
        """Value of a named condition from the template's Conditions section."""
        if name not in self._condition_cache:
            conditions = self.template.conditions
            if name not in conditions:
                raise TemplateError(f"condition {name!r} is not defined in Conditions")
            self._condition_cache[name] = bool(self.resolve(conditions[name]))
        return self._condition_cache[name]

    def resource_enabled(self, logical_id: str) -> bool:
        """False when the resource carries a Condition that evaluates false."""
        name = self.template.resources[logical_id].get("Condition")
        return True if name is None else self.condition(str(name))

    # -- references ---------------------------------------------------------------------------
    def ref(self, name: str) -> Any:
        pseudo = self.pseudo_parameters()
        if name in pseudo:
            return pseudo[name]
        if name in self.template.parameters:
            return self.template.parameters[name]
        if name in self.physical:
            return self.physical[name].ref
        resource = self.template.resources.get(name)
        if resource is None:
            raise TemplateError(f"Ref to {name!r}: no such parameter or resource")
        return self._unprovisioned(name, str(resource.get("Type")), None)

    def get_att(self, logical_id: str, attribute: str) -> Any:
        if logical_id in self.physical:
            attributes = self.physical[logical_id].attributes
            if attribute not in attributes:
                raise TemplateError(
                    f"Fn::GetAtt {logical_id}.{attribute}: attribute not emulated "
                    f"(available: {', '.join(sorted(attributes)) or 'none'})"
                )
            return attributes[attribute]
        resource = self.template.resources.get(logical_id)
        if resource is None:
            raise TemplateError(f"Fn::GetAtt {logical_id}.{attribute}: no such resource")
        return self._unprovisioned(logical_id, str(resource.get("Type")), attribute)

    def _unprovisioned(self, logical_id: str, resource_type: str, attribute: str | None) -> str:
        """Stand-in ids for resources that exist only as local code (functions, APIs, layers)."""
        name = self.physical_name(logical_id)
        arn_prefix = f"arn:aws:lambda:{self.region}:{self.account_id}"
        stand_ins: dict[str, dict[str | None, str]] = {
            SERVERLESS_FUNCTION: {None: name, "Arn": f"{arn_prefix}:function:{name}"},
            "AWS::Lambda::Function": {None: name, "Arn": f"{arn_prefix}:function:{name}"},
            SERVERLESS_LAYER: {None: f"{arn_prefix}:layer:{name}:1"},
            "AWS::Lambda::LayerVersion": {None: f"{arn_prefix}:layer:{name}:1"},
            SERVERLESS_HTTP_API: {None: local_api_id(logical_id), "ApiId": local_api_id(logical_id)},
            APIGW_API: {None: local_api_id(logical_id), "ApiId": local_api_id(logical_id)},
            APIGW_INTEGRATION: {None: local_api_id(logical_id)[:7]},
            APIGW_AUTHORIZER: {None: local_api_id(logical_id)[:6]},
            "AWS::IAM::Role": {None: name, "Arn": f"arn:aws:iam::{self.account_id}:role/{name}"},
        }
        values = stand_ins.get(resource_type)
        if values is None or attribute not in values:
            what = f"Fn::GetAtt {logical_id}.{attribute}" if attribute else f"Ref {logical_id}"
            raise TemplateError(f"{what}: {resource_type} is not provisioned locally, so it has no local value")
        return values[attribute]

    # -- evaluation ---------------------------------------------------------------------------
    def resolve(self, value: Any) -> Any:
        """Evaluate every intrinsic in ``value``; ``AWS::NoValue`` entries are dropped."""
        if isinstance(value, list):
            return [r for r in (self.resolve(v) for v in value) if r is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref" or key.startswith("Fn::") or key == "Condition":
                return self._intrinsic(key, arg)
        return {k: r for k, r in ((k, self.resolve(v)) for k, v in value.items()) if r is not NO_VALUE}

    def _intrinsic(self, key: str, arg: Any) -> Any:
        if key == "Ref":
            return self.ref(str(arg))
        if key == "Condition":
            return self.condition(str(arg))
        if key == "Fn::GetAtt":
            parts = arg if isinstance(arg, list) else str(arg).split(".", 1)
            if len(parts) != 2:
                raise TemplateError(f"Fn::GetAtt needs [LogicalId, Attribute], got {arg!r}")
            return self.get_att(str(parts[0]), str(self.resolve(parts[1])))
        if key == "Fn::Sub":
            return self._sub(arg)
        if key == "Fn::Join":
            delimiter, items = arg
            resolved = self.resolve(items)
            return str(delimiter).join(_as_text(i) for i in resolved)
        if key == "Fn::Select":
            index, items = arg
            return self.resolve(items)[int(self.resolve(index))]
        if key == "Fn::Split":
            delimiter, text = arg
            return str(self.resolve(text)).split(str(delimiter))
        if key == "Fn::If":
            name, when_true, when_false = arg
            return self.resolve(when_true if self.condition(str(name)) else when_false)
        if key == "Fn::Equals":
            left, right = self.resolve(arg)
            return _as_text(left) == _as_text(right)
        if key == "Fn::Not":
            return not self.resolve(arg[0])
        if key == "Fn::And":
            return all(self.resolve(a) for a in arg)
        if key == "Fn::Or":
            return any(self.resolve(a) for a in arg)
        if key == "Fn::FindInMap":
            mapping, first, second = (self.resolve(a) for a in arg)
            try:
                return self.template.document["Mappings"][mapping][first][second]
            except KeyError as exc:
                raise TemplateError(f"Fn::FindInMap {mapping}/{first}/{second}: no such entry") from exc
        if key == "Fn::GetAZs":
            return [f"{self.region}{zone}" for zone in "abc"]
        if key == "Fn::Base64":
            import base64

            return base64.b64encode(str(self.resolve(arg)).encode()).decode()
        raise TemplateError(f"intrinsic function {key} is not supported by the local stack")

    def _sub(self, arg: Any) -> str:
        if isinstance(arg, list):
            text, variables = str(arg[0]), self.resolve(arg[1] if len(arg) > 1 else {})
        else:
            text, variables = str(arg), {}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1).strip()
            if name in variables:
                return _as_text(variables[name])
            if "." in name and not name.startswith("AWS::"):
                logical_id, attribute = name.split(".", 1)
                return _as_text(self.get_att(logical_id, attribute))
            return _as_text(self.ref(name))

        return _SUB_LITERAL.sub("${", _SUB_VARIABLE.sub(replace, text))


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_as_text(v) for v in value)
    return str(value)


def local_api_id(logical_id: str) -> str:
    """A stable, API-Gateway-looking id (10 lowercase alphanumerics) for an HTTP API."""
    import hashlib

    return hashlib.sha256(logical_id.encode()).hexdigest()[:10]


# ------------------------------------------------------------------------------------------ SAM specs
@dataclass(frozen=True)
class HttpRoute:
    """One HttpApi event: method and path routed to a function, with its authorization."""

    function_id: str
    event_id: str
    api_id: str
    method: str  # upper case; ANY matches every method
    path: str  # "/jobs/{job_id}", "$default" for the catch-all route
    authorizer: str | None  # None: no authorization (Authorizer: NONE)
    authorizer_kind: str | None  # "iam", "jwt", "lambda" or None
    integration_timeout_ms: int = MAX_INTEGRATION_TIMEOUT_MS  # the integration's TimeoutInMillis

    @property
    def route_key(self) -> str:
        return "$default" if self.path == "$default" else f"{self.method} {self.path}"


def _maximum_concurrency(properties: dict[str, Any], where: str) -> int | None:
    """An SQS event's ScalingConfig.MaximumConcurrency, checked as Lambda checks it (2 to 1000)."""
    raw = (properties.get("ScalingConfig") or {}).get("MaximumConcurrency")
    if raw is None:
        return None
    value = int(raw)
    if not 2 <= value <= 1000:
        raise TemplateError(f"{where}: ScalingConfig.MaximumConcurrency must be 2 to 1000, got {value}")
    return value


@dataclass(frozen=True)
class SqsEventSpec:
    """One SQS event source mapping."""

    function_id: str
    event_id: str
    queue_id: str  # logical id of the AWS::SQS::Queue
    batch_size: int
    report_batch_item_failures: bool
    enabled: bool
    # ScalingConfig.MaximumConcurrency: the most invocations the mapping runs at once (2 to 1000),
    # https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html; None when not set.
    maximum_concurrency: int | None = None


@dataclass(frozen=True)
class ScheduleEventSpec:
    """One Schedule (EventBridge rule) or ScheduleV2 (EventBridge Scheduler) event."""

    function_id: str
    event_id: str
    kind: str  # "Schedule" or "ScheduleV2"
    expression: str
    input: str | None
    enabled: bool


@dataclass(frozen=True)
class FunctionSpec:
    """An AWS::Serverless::Function with Globals merged and every value resolved."""

    logical_id: str
    name: str
    code_uri: Path
    handler: str
    timeout: int
    memory_size: int
    environment: dict[str, str]
    layer_ids: tuple[str, ...]
    reserved_concurrency: int | None = None  # ReservedConcurrentExecutions; None: not reserved


@dataclass(frozen=True)
class Application:
    """Everything the local runtime needs from the SAM resources."""

    functions: dict[str, FunctionSpec]
    routes: tuple[HttpRoute, ...]
    sqs_events: tuple[SqsEventSpec, ...]
    schedules: tuple[ScheduleEventSpec, ...]
    layer_paths: dict[str, Path]  # logical id -> "<ContentUri>/python" when present, else ContentUri


def merge_globals(global_properties: Mapping[str, Any], properties: Mapping[str, Any]) -> dict[str, Any]:
    """SAM's Globals rule: maps merge (the resource wins), lists add up, scalars are overridden."""
    merged: dict[str, Any] = dict(global_properties)
    for key, value in properties.items():
        current = merged.get(key)
        if isinstance(current, dict) and isinstance(value, dict) and not _is_intrinsic(value):
            merged[key] = merge_globals(current, value)
        elif isinstance(current, list) and isinstance(value, list):
            merged[key] = current + value
        else:
            merged[key] = value
    return merged


def _is_intrinsic(value: Mapping[str, Any]) -> bool:
    if len(value) != 1:
        return False
    key = str(next(iter(value)))
    return key in ("Ref", "Condition") or key.startswith("Fn::")


def _referenced_id(value: Any, what: str) -> str:
    """The logical id behind ``!Ref X`` or ``!GetAtt X.Attr``."""
    if isinstance(value, dict) and len(value) == 1:
        ((key, arg),) = value.items()
        if key == "Ref":
            return str(arg)
        if key == "Fn::GetAtt":
            parts = arg if isinstance(arg, list) else str(arg).split(".", 1)
            return str(parts[0])
    raise TemplateError(f"{what} must reference a resource of this template (!Ref / !GetAtt), got {value!r}")


def _http_api_auth(template: CfnTemplate, resolver: Resolver, api_id: str) -> tuple[Any, dict[str, Any]]:
    """(DefaultAuthorizer, Authorizers) of an HttpApi resource, resolved."""
    if api_id == IMPLICIT_HTTP_API:
        properties = (template.document.get("Globals") or {}).get("HttpApi") or {}
    else:
        properties = template.resources[api_id].get("Properties") or {}
    auth = resolver.resolve(properties.get("Auth") or {})
    return auth.get("DefaultAuthorizer"), dict(auth.get("Authorizers") or {})


def _authorizer_kind(name: str | None, authorizers: Mapping[str, Any]) -> str | None:
    if name is None:
        return None
    if name == "AWS_IAM":
        return "iam"
    definition = authorizers.get(name) or {}
    if "JwtConfiguration" in definition:
        return "jwt"
    if "FunctionArn" in definition:
        return "lambda"
    raise TemplateError(f"authorizer {name!r} is not defined in the HttpApi's Auth.Authorizers")


def read_application(template: CfnTemplate, resolver: Resolver) -> Application:
    """Turn the template's SAM resources into resolved specs for the local runtime."""
    global_properties = template.function_globals
    functions: dict[str, FunctionSpec] = {}
    routes: list[HttpRoute] = []
    sqs_events: list[SqsEventSpec] = []
    schedules: list[ScheduleEventSpec] = []

    for logical_id, resource in template.resources_of_type(SERVERLESS_FUNCTION).items():
        if not resolver.resource_enabled(logical_id):
            continue
        raw = merge_globals(global_properties, resource.get("Properties") or {})
        events = raw.pop("Events", None) or {}
        properties = resolver.resolve(raw)
        handler = properties.get("Handler")
        code_uri = properties.get("CodeUri")
        if not isinstance(handler, str) or not isinstance(code_uri, str):
            raise TemplateError(f"{logical_id}: the local stack needs a local CodeUri and a Handler")
        variables = (properties.get("Environment") or {}).get("Variables") or {}
        layer_ids = tuple(_referenced_id(layer, f"{logical_id}.Layers") for layer in raw.get("Layers") or [])
        functions[logical_id] = FunctionSpec(
            logical_id=logical_id,
            name=str(properties.get("FunctionName") or resolver.physical_name(logical_id)),
            code_uri=(template.root / code_uri).resolve(),
            handler=handler,
            timeout=_function_timeout(logical_id, properties.get("Timeout", _DEFAULT_TIMEOUT)),
            memory_size=int(properties.get("MemorySize", _DEFAULT_MEMORY)),
            environment={name: _as_text(value) for name, value in variables.items()},
            layer_ids=layer_ids,
            reserved_concurrency=reserved_concurrency(logical_id, properties),
        )
        for event_id, event in events.items():
            event_type = event.get("Type")
            event_properties = event.get("Properties") or {}
            if event_type == "HttpApi":
                routes.append(_http_route(template, resolver, logical_id, event_id, event_properties))
            elif event_type == "SQS":
                resolved = resolver.resolve({k: v for k, v in event_properties.items() if k != "Queue"})
                sqs_events.append(
                    SqsEventSpec(
                        function_id=logical_id,
                        event_id=event_id,
                        queue_id=_referenced_id(event_properties.get("Queue"), f"{logical_id}.{event_id}.Queue"),
                        batch_size=int(resolved.get("BatchSize", _DEFAULT_SQS_BATCH)),
                        report_batch_item_failures="ReportBatchItemFailures"
                        in (resolved.get("FunctionResponseTypes") or []),
                        enabled=bool(resolved.get("Enabled", True)),
                        maximum_concurrency=_maximum_concurrency(resolved, f"{logical_id}.{event_id}"),
                    )
                )
            elif event_type in ("Schedule", "ScheduleV2"):
                resolved = resolver.resolve(event_properties)
                expression = resolved.get("Schedule") or resolved.get("ScheduleExpression")
                state = str(resolved.get("State", "ENABLED")).upper()
                schedules.append(
                    ScheduleEventSpec(
                        function_id=logical_id,
                        event_id=event_id,
                        kind=str(event_type),
                        expression=str(expression),
                        input=resolved.get("Input"),
                        enabled=bool(resolved.get("Enabled", True)) and state == "ENABLED",
                    )
                )
            else:
                raise TemplateError(f"{logical_id}.{event_id}: event type {event_type} is not emulated locally")

    for logical_id in template.resources_of_type(APIGW_ROUTE):
        if resolver.resource_enabled(logical_id):
            routes.append(_apigw_route(template, resolver, logical_id))

    layer_paths: dict[str, Path] = {}
    for logical_id, resource in template.resources_of_type(SERVERLESS_LAYER).items():
        content_uri = resolver.resolve((resource.get("Properties") or {}).get("ContentUri"))
        if not isinstance(content_uri, str):
            raise TemplateError(f"{logical_id}: the local stack needs a local ContentUri")
        content = (template.root / content_uri).resolve()
        layer_paths[logical_id] = content / "python" if (content / "python").is_dir() else content

    return Application(
        functions=functions,
        routes=tuple(routes),
        sqs_events=tuple(sqs_events),
        schedules=tuple(schedules),
        layer_paths=layer_paths,
    )


def _whole_number(value: Any, what: str) -> int:
    text = _as_text(value).strip()
    if not text.isdigit():
        raise TemplateError(f"{what} must be a whole number, got {value!r}")
    return int(text)


def _function_timeout(logical_id: str, value: Any) -> int:
    """The function's Timeout in seconds, refused outside Lambda's 1-900."""
    timeout = _whole_number(value, f"{logical_id}.Timeout")
    if not 1 <= timeout <= MAX_FUNCTION_TIMEOUT_SECONDS:
        raise TemplateError(f"{logical_id}.Timeout is {timeout} s; Lambda allows 1 to {MAX_FUNCTION_TIMEOUT_SECONDS}")
    return timeout


def reserved_concurrency(logical_id: str, properties: Mapping[str, Any]) -> int | None:
    """A function's resolved ReservedConcurrentExecutions (None when the template reserves none)."""
    value = properties.get("ReservedConcurrentExecutions")
    if value is None:
        return None
    return _whole_number(value, f"{logical_id}.ReservedConcurrentExecutions")


def _integration_timeout(owner: str, value: Any) -> int:
    """TimeoutInMillis of an HTTP API integration, refused outside API Gateway's 50-30,000 ms."""
    if value is None:
        return MAX_INTEGRATION_TIMEOUT_MS
    millis = _whole_number(value, f"{owner}.TimeoutInMillis")
    if not MIN_INTEGRATION_TIMEOUT_MS <= millis <= MAX_INTEGRATION_TIMEOUT_MS:
        raise TemplateError(
            f"{owner}.TimeoutInMillis is {millis}; an HTTP API integration allows "
            f"{MIN_INTEGRATION_TIMEOUT_MS} to {MAX_INTEGRATION_TIMEOUT_MS} ms"
        )
    return millis


def _http_route(
    template: CfnTemplate, resolver: Resolver, function_id: str, event_id: str, properties: Mapping[str, Any]
) -> HttpRoute:
    api_id = (
        _referenced_id(properties["ApiId"], f"{function_id}.{event_id}.ApiId")
        if "ApiId" in properties
        else IMPLICIT_HTTP_API
    )
    default_authorizer, authorizers = _http_api_auth(template, resolver, api_id)
    resolved = resolver.resolve({k: v for k, v in properties.items() if k != "ApiId"})
    route_auth = resolved.get("Auth") or {}
    authorizer = route_auth.get("Authorizer", default_authorizer)
    if authorizer == "NONE":
        authorizer = None
    path = str(resolved.get("Path", "$default"))
    method = str(resolved.get("Method", "ANY")).upper()
    if method == "X-AMAZON-APIGATEWAY-ANY-METHOD":
        method = "ANY"
    return HttpRoute(
        function_id=function_id,
        event_id=event_id,
        api_id=api_id,
        method=method,
        path=path,
        authorizer=authorizer,
        authorizer_kind=_authorizer_kind(authorizer, authorizers),
        integration_timeout_ms=_integration_timeout(f"{function_id}.{event_id}", resolved.get("TimeoutInMillis")),
    )


_AUTHORIZATION_KINDS = {"NONE": None, "AWS_IAM": "iam", "JWT": "jwt", "CUSTOM": "lambda"}
_INTEGRATION_TARGET = re.compile(r"^integrations/\$\{([A-Za-z0-9]+)\}$")


def _apigw_route(template: CfnTemplate, resolver: Resolver, route_id: str) -> HttpRoute:
    """An AWS::ApiGatewayV2::Route whose target is a Lambda proxy integration of this template."""
    properties = template.resources[route_id].get("Properties") or {}
    api_id = _referenced_id(properties.get("ApiId"), f"{route_id}.ApiId")
    target = properties.get("Target")
    sub = target.get("Fn::Sub") if isinstance(target, dict) else None
    match = _INTEGRATION_TARGET.match(sub) if isinstance(sub, str) else None
    if match is None:
        raise TemplateError(f'{route_id}.Target must be !Sub "integrations/${{<Integration>}}", got {target!r}')
    integration_id = match.group(1)
    integration = template.resources.get(integration_id) or {}
    if integration.get("Type") != APIGW_INTEGRATION:
        raise TemplateError(f"{route_id}.Target: {integration_id} is not an {APIGW_INTEGRATION}")
    integration_properties = integration.get("Properties") or {}
    if resolver.resolve(integration_properties.get("IntegrationType")) != "AWS_PROXY":
        raise TemplateError(f"{integration_id}: only AWS_PROXY (Lambda) integrations are emulated locally")
    if str(resolver.resolve(integration_properties.get("PayloadFormatVersion"))) != "2.0":
        raise TemplateError(f"{integration_id}: the local API emulates PayloadFormatVersion 2.0 only")
    function_id = _integrated_function(integration_properties.get("IntegrationUri"), integration_id)
    route_key = str(resolver.resolve(properties.get("RouteKey")))
    method, _, path = route_key.partition(" ") if route_key != "$default" else ("ANY", "", "$default")
    authorization = str(resolver.resolve(properties.get("AuthorizationType", "NONE")))
    if authorization not in _AUTHORIZATION_KINDS:
        raise TemplateError(
            f"{route_id}.AuthorizationType {authorization!r} is not one of {sorted(_AUTHORIZATION_KINDS)}"
        )
    kind = _AUTHORIZATION_KINDS[authorization]
    authorizer_ref = properties.get("AuthorizerId")
    if isinstance(authorizer_ref, dict) and "Fn::If" in authorizer_ref:
        name, when_true, when_false = authorizer_ref["Fn::If"]
        authorizer_ref = when_true if resolver.condition(str(name)) else when_false
    authorizer = {"iam": "AWS_IAM"}.get(kind or "") or (
        _referenced_id(authorizer_ref, f"{route_id}.AuthorizerId") if kind else None
    )
    return HttpRoute(
        function_id=function_id,
        event_id=route_id,
        api_id=api_id,
        method=method.upper(),
        path=path,
        authorizer=authorizer,
        authorizer_kind=kind,
        integration_timeout_ms=_integration_timeout(
            integration_id, resolver.resolve(integration_properties.get("TimeoutInMillis"))
        ),
    )


def _integrated_function(uri: Any, integration_id: str) -> str:
    """The function behind an integration's IntegrationUri (!GetAtt Fn.Arn or a !Sub naming ${Fn.Arn})."""
    if isinstance(uri, dict) and "Fn::Sub" in uri and isinstance(uri["Fn::Sub"], str):
        found = re.search(r"\$\{([A-Za-z0-9]+)\.Arn\}", uri["Fn::Sub"])
        if found:
            return found.group(1)
    return _referenced_id(uri, f"{integration_id}.IntegrationUri")
