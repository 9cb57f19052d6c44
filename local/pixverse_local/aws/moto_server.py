"""Two guarantees of AWS the emulated pieces lack under concurrency, restored for the local stack.
Found by the reliability suite (tests/reliability), which measured both.

1. DynamoDB serializes the writes to an item; moto (5.2.x) checks a write's ConditionExpression and
   then applies it with no lock in between, so two concurrent conditional UpdateItems can both pass
   the same condition (measured: 328 QUEUED -> COMPLETED transitions for 320 jobs whose callbacks
   came three times at once). ``python -m pixverse_local.aws.moto_server`` runs moto server with its
   DynamoDB writes under one lock.

2. Lambda runs one invocation per execution environment; the local stack runs each function's
   "containers" as threads of one process. Powertools' API resolver keeps the current event on its
   *class*, shared by every resolver in the process, so a handler could read another request's
   event (measured: two different POST /jobs answered with one job). ``event_per_resolver`` makes
   ``resolve`` set the event and context on the resolver *instance* (one per container) first.

3. Time: SQS delays (visibility timeouts, ``DelaySeconds``) follow ``LOCAL_TIME_SCALE``
   (``scale_sqs_delays``; see timescale.py), inside moto so every client sees the same queue.

4. Service limits moto does not hold to AWS's numbers (``aws_service_limits``): SNS Publish over
   256 KiB, DynamoDB items over 400 KB or nested deeper than 32 levels, SQS messages whose body and
   attributes together exceed the queue's MaximumMessageSize. Each is refused with the error AWS
   answers, cited where it is checked.

6. EventBridge (``eventbridge_as_aws``): PutEvents entries of 256 KB or more refused; a rule's
   target that cannot take an event never fails PutEvents; disabled rules deliver nothing; an
   SQS target receives only what its queue policy lets events.amazonaws.com send for that rule.

5. SQS fair queues (``sqs_fair_queues``): on AWS a standard queue whose producers set MessageGroupId
   keeps a tenant with a large backlog from holding back the others; moto hands a standard queue's
   messages out oldest first whatever their group. The policy emulated, and how it relates to AWS's,
   is set out in that section.

6. S3 presigned URLs (``presigned_url_checks``, presigned.py): moto serves them without checking
   their signature, expiry or signed headers; S3 refuses a PUT whose Content-Type or size differs
   from what was signed, and an expired URL.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import copy
import fnmatch
import heapq
import json
import logging
import os
import string
import sys
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pixverse_local.aws.timescale import ENV_NAME as TIME_SCALE_ENV
from pixverse_local.aws.timescale import TimeScaleError, parse_time_scale, scaled_milliseconds

_DYNAMODB_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item")
# One lock for every DynamoDB write, whichever wrapper takes it first (reentrant: the limit checks
# below take it too, so an UpdateItem is checked and, if refused, rolled back with no write between).
_DYNAMODB_LOCK = threading.RLock()


def atomic_dynamodb_writes() -> None:
    """Serialize moto's DynamoDB writes, as DynamoDB serializes the writes to an item."""
    from moto.dynamodb import models

    backend = models.DynamoDBBackend
    for name in _DYNAMODB_WRITES:
        original = getattr(backend, name, None)
        if original is None or getattr(original, "_serialized", False):
            continue

        def serialized(self: Any, *args: Any, _original: Callable[..., Any] = original, **kwargs: Any) -> Any:
            with _DYNAMODB_LOCK:
                return _original(self, *args, **kwargs)

        serialized._serialized = True  # type: ignore[attr-defined]
        setattr(backend, name, serialized)


# ------------------------------------------------------------------------------------------ time
_sqs_time_scale = 1.0


def scale_sqs_delays(scale: float) -> None:
    """Make moto's SQS visibility timeouts and delays last ``scale`` times their value.

    moto turns every such delay into a deadline in exactly two places, ``Message.change_visibility``
    (a receive with the queue's or the request's VisibilityTimeout, ChangeMessageVisibility and its
    batch) and ``Message.delay`` (the queue's or the message's DelaySeconds); both are replaced.
    Validation (0-43,200 s, 0-900 s) still sees the numbers the caller gave, as AWS validates them.
    """
    global _sqs_time_scale  # noqa: PLW0603 - one moto process, one scale
    from moto.core.utils import unix_time_millis
    from moto.sqs.models import Message

    _sqs_time_scale = scale
    if getattr(Message.change_visibility, "_scaled", False):
        return

    def change_visibility(self: Any, visibility_timeout: int) -> None:
        self.visible_at = unix_time_millis() + scaled_milliseconds(int(visibility_timeout), _sqs_time_scale)

    def delay(self: Any, delay_seconds: int) -> None:
        self.delayed_until = unix_time_millis() + scaled_milliseconds(int(delay_seconds), _sqs_time_scale)

    change_visibility._scaled = delay._scaled = True  # type: ignore[attr-defined]
    Message.change_visibility = change_visibility  # type: ignore[method-assign]
    Message.delay = delay  # type: ignore[method-assign]


# ------------------------------------------------------------------------------------------ limits
# SNS: "Messages must be UTF-8 encoded strings and at most 256 KB in size (262,144 bytes, not
# 262,144 characters)"; "All parts of the message attribute, including name, type, and value, are
# included in the message size restriction" (SNS API reference, Publish and MessageAttributeValue).
# Over it, Publish answers InvalidParameter "Invalid parameter: Message too long". A topic may opt in
# to up to 1 MiB with its MaximumMessageSize attribute (SNS developer guide, "Publishing large
# messages"); the template's topic does not, and that attribute is not emulated here.
SNS_MAX_MESSAGE_BYTES = 262_144

# DynamoDB: "The maximum item size in DynamoDB is 400 KB, which includes both attribute name binary
# length (UTF-8 length) and attribute value lengths"; "1 KB = 1024 bytes" (DynamoDB developer guide,
# Constraints). Sizes are counted as "DynamoDB item sizes and formats" describes (item_size below).
DYNAMODB_MAX_ITEM_BYTES = 400 * 1024
# "DynamoDB supports nested attributes up to 32 levels deep" (Constraints), counting the item's own
# attribute as level 1: a value wrapped in 31 maps is stored, in 32 refused (measured against
# DynamoDB by the dynoxide emulator's conformance tests, with this message).
DYNAMODB_MAX_DEPTH = 32
DYNAMODB_NESTING_MESSAGE = (
    "Nesting Levels have exceeded supported limits: Attributes in the item have nested levels beyond supported limit"
)


def utf8_size(text: str) -> int:
    """Bytes of ``text`` in UTF-8 (a lone surrogate counts as its 3 bytes)."""
    return len(text.encode("utf-8", "surrogatepass"))


def _binary_size(value: Any) -> int:
    if isinstance(value, bytes | bytearray):
        return len(value)
    try:
        return len(base64.b64decode(str(value), validate=True))
    except (binascii.Error, ValueError):
        return utf8_size(str(value))


def _number_size(text: str) -> int:
    """(1 byte per two significant digits) + 1 byte; leading and trailing zeroes are trimmed."""
    mantissa = str(text).strip().lstrip("+-").lower().split("e", 1)[0]
    digits = mantissa.replace(".", "").strip("0") or "0"
    return (len(digits) + 1) // 2 + 1


def _typed(value: Any) -> tuple[str, Any]:
    """(type, value) of an attribute value given as ``{"S": "x"}`` or as a moto ``DynamoType``."""
    if isinstance(value, Mapping):
        ((kind, inner),) = value.items()
        return str(kind), inner
    return str(value.type), value.value


def attribute_value_size(value: Any) -> int:
    """Bytes DynamoDB counts for one attribute value (without its name).

    "DynamoDB item sizes and formats": strings are their UTF-8 bytes, binaries their raw bytes,
    numbers as above, null and Boolean 1 byte; a List or Map has 3 bytes of overhead plus 1 byte per
    element (and a Map element its name's UTF-8 bytes); sets are the sum of their elements.
    """
    kind, inner = _typed(value)
    if kind == "S":
        return utf8_size(str(inner))
    if kind == "N":
        return _number_size(str(inner))
    if kind == "B":
        return _binary_size(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(utf8_size(str(v)) for v in inner)
    if kind == "NS":
        return sum(_number_size(str(v)) for v in inner)
    if kind == "BS":
        return sum(_binary_size(v) for v in inner)
    if kind == "L":
        return 3 + sum(1 + attribute_value_size(v) for v in inner)
    if kind == "M":
        return 3 + sum(1 + utf8_size(k) + attribute_value_size(v) for k, v in inner.items())
    return utf8_size(str(inner))


def item_size(attributes: Mapping[str, Any]) -> int:
    """Bytes DynamoDB counts for an item: each attribute's name and value."""
    return sum(utf8_size(name) + attribute_value_size(value) for name, value in attributes.items())


def attribute_depth(value: Any) -> int:
    """Levels of an attribute value, the attribute itself being level 1 (iterative: no recursion limit)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        current, level = stack.pop()
        deepest = max(deepest, level)
        kind, inner = _typed(current)
        children: Iterable[Any] = inner if kind == "L" else inner.values() if kind == "M" else ()
        stack.extend((child, level + 1) for child in children)
    return deepest


def _too_deep(values: Iterable[Any]) -> bool:
    return any(attribute_depth(value) > DYNAMODB_MAX_DEPTH for value in values)


def _sns_message_size(message: str, attributes: Mapping[str, Any] | None) -> int:
    size = utf8_size(message)
    for name, attribute in (attributes or {}).items():
        kind = str(attribute.get("Type", ""))
        raw = attribute.get("Value", "")
        value_size = _binary_size(raw) if kind.startswith("Binary") else utf8_size(str(raw))
        size += utf8_size(name) + utf8_size(kind) + value_size
    return size


def _sqs_message_size(body: str, attributes: Mapping[str, Any] | None) -> int:
    size = utf8_size(body)
    for name, attribute in (attributes or {}).items():
        size += utf8_size(name) + utf8_size(str(attribute.get("DataType", "")))
        if "BinaryValue" in attribute:
            size += _binary_size(attribute["BinaryValue"])
        else:
            size += utf8_size(str(attribute.get("StringValue", "")))
    return size


def aws_service_limits() -> None:
    """Hold moto's SNS, SQS and DynamoDB to the size and nesting limits AWS enforces."""
    _sns_limits()
    _sqs_limits()
    _dynamodb_limits()


def _sns_limits() -> None:
    from moto.sns.exceptions import InvalidParameterValue
    from moto.sns.models import SNSBackend

    if getattr(SNSBackend, "_pixverse_limited", False):
        return
    SNSBackend._pixverse_limited = True  # type: ignore[attr-defined]
    original = SNSBackend.publish

    def publish(self: Any, message: str, arn: str | None, *args: Any, **kwargs: Any) -> str:
        # moto counts characters of the body only; SNS counts UTF-8 bytes of body and attributes.
        attributes = kwargs.get("message_attributes", args[2] if len(args) > 2 else None)
        phone_number = kwargs.get("phone_number", args[0] if args else None)
        if not phone_number and _sns_message_size(message, attributes) > SNS_MAX_MESSAGE_BYTES:
            raise InvalidParameterValue("Invalid parameter: Message too long")
        return original(self, message, arn, *args, **kwargs)

    SNSBackend.publish = publish  # type: ignore[method-assign]


def _sqs_limits() -> None:
    from moto.sqs.exceptions import InvalidParameterValue
    from moto.sqs.models import SQSBackend

    if getattr(SQSBackend, "_pixverse_limited", False):
        return
    SQSBackend._pixverse_limited = True  # type: ignore[attr-defined]
    original = SQSBackend.send_message

    def send_message(self: Any, queue_name: str, message_body: str, *args: Any, **kwargs: Any) -> Any:
        # "All parts of the message attribute, including name, type, and value, are part of the message
        # size restriction" (SQS API reference, MessageAttributeValue); the limit is the queue's
        # MaximumMessageSize (1,048,576 bytes by default since 2025, as moto 5.2 has it). moto measures
        # the body alone, in characters.
        attributes = kwargs.get("message_attributes", args[0] if args else None)
        limit = int(self.get_queue(queue_name).maximum_message_size)
        if _sqs_message_size(message_body, attributes) > limit:
            raise InvalidParameterValue(
                f"One or more parameters are invalid. Reason: Message must be shorter than {limit} bytes."
            )
        return original(self, queue_name, message_body, *args, **kwargs)

    SQSBackend.send_message = send_message  # type: ignore[method-assign]


def _dynamodb_limits() -> None:
    from moto.dynamodb.exceptions import ItemSizeTooLarge, ItemSizeToUpdateTooLarge, MockValidationException
    from moto.dynamodb.models import DynamoDBBackend, dynamo_type

    if getattr(DynamoDBBackend, "_pixverse_limited", False):
        return
    DynamoDBBackend._pixverse_limited = True  # type: ignore[attr-defined]
    # moto's own check (405,000 "bytes" counted without DynamoDB's overheads, on top-level sets only)
    # would refuse items DynamoDB stores; the checks below count as DynamoDB does.
    dynamo_type.LimitedSizeDict.__setitem__ = dict.__setitem__  # type: ignore[assignment,method-assign]
    original_put, original_update = DynamoDBBackend.put_item, DynamoDBBackend.update_item

    def put_item(self: Any, table_name: str, item_attrs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        if _too_deep(item_attrs.values()):
            raise MockValidationException(DYNAMODB_NESTING_MESSAGE)
        if item_size(item_attrs) > DYNAMODB_MAX_ITEM_BYTES:
            raise ItemSizeTooLarge()
        return original_put(self, table_name, item_attrs, *args, **kwargs)

    def update_item(self: Any, table_name: str, key: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        values = kwargs.get("expression_attribute_values", args[2] if len(args) > 2 else None) or {}
        if _too_deep(values.values()):
            raise MockValidationException(DYNAMODB_NESTING_MESSAGE)
        with _DYNAMODB_LOCK:
            table = self.get_table(table_name)
            keys = _key_values(table, key)
            before = copy.deepcopy(table.get_item(*keys)) if keys is not None else None
            item = original_update(self, table_name, key, *args, **kwargs)
            # DynamoDB checks the item the update produces (an update can grow a stored item past the
            # limit); refused, the item stays as it was.
            attributes = dict(item.attrs)
            refusal: Exception | None = None
            if _too_deep(attributes.values()):
                refusal = MockValidationException(DYNAMODB_NESTING_MESSAGE)
            elif item_size(attributes) > DYNAMODB_MAX_ITEM_BYTES:
                refusal = ItemSizeToUpdateTooLarge()
            if refusal is None:
                return item
            if keys is None:  # a key moto resolves otherwise: cannot restore, refuse anyway
                raise refusal
            if before is None:
                table.delete_item(*keys)
            else:
                item.attrs = before.attrs
            raise refusal

    DynamoDBBackend.put_item = put_item  # type: ignore[method-assign]
    DynamoDBBackend.update_item = update_item  # type: ignore[method-assign]


def _key_values(table: Any, key: Mapping[str, Any]) -> tuple[Any, Any] | None:
    """(hash, range) DynamoTypes of an UpdateItem key, as moto looks the item up; None if unusual."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    if table.hash_key_attr not in key:
        return None
    range_attr = table.range_key_attr
    range_value = DynamoType(key[range_attr]) if range_attr and range_attr in key else None
    return DynamoType(key[table.hash_key_attr]), range_value


# ------------------------------------------------------------------------------------------ SQS fair queues
# What AWS documents (SQS developer guide, "Amazon SQS fair queues" and "How Amazon SQS fair queues
# work"; SendMessage API reference, MessageGroupId):
# - "In standard queues, using MessageGroupId enables fair queues"; "Unlike FIFO queues, messages
#   with the same MessageGroupId can be processed in parallel, maintaining the high throughput of
#   standard queues." The group is the tenant, and "Each message without a MessageGroupId is treated
#   as belonging to its own distinct tenant."
# - A tenant is marked a noisy neighbour when it holds more than 10% of the queue's in-flight messages
#   and at least 30 of its own, or more than 10% of recent consumer processing time ("these thresholds
#   are approximate"). From then on, receives return quiet tenants' messages whenever some are
#   waiting; among several noisy tenants, the one with the fewest messages in flight goes first.
#   Noisy messages are neither dropped nor throttled (SQS sets no per-tenant consumption rate): with
#   no quiet message waiting they are handed out as usual. A tenant is quiet again once its backlog
#   is drained, or after 5 minutes without a send.
# - MessageGroupId: at most 128 characters, alphanumeric and punctuation (!"#$%&'()*+,-./:;<=>?@[\]^_`{|}~).
#
# What is emulated here, for standard queues only (FIFO queues keep moto's behaviour untouched):
# ReceiveMessage takes, one message at a time, from the tenant with the fewest messages in flight
# (received and still invisible, counting those this very receive has taken), ties going to the tenant
# whose next message is oldest; within a tenant, oldest first. So groups take turns, a tenant with a
# backlog in flight yields to every tenant with fewer, and a queue without groups is served oldest
# first as before. No message is held back while the receive has room: throughput is unchanged.
# The emulation is always on, where AWS turns prioritisation on per tenant after detecting it (by
# approximate thresholds and a processing-time share that are not emulated): locally a quiet tenant
# never waits behind a backlog, on AWS it may until the noisy tenant is detected. Code and tests should
# rely only on what both give, a quiet tenant's messages not waiting for a noisy backlog to drain,
# never on exact positions.
# The group id comes back as the MessageGroupId system attribute (moto already returns it), and so in
# the Lambda record's attributes (sqs_event_source.build_sqs_event copies them).
MESSAGE_GROUP_ID_MAX_LENGTH = 128
_MESSAGE_GROUP_ID_CHARACTERS = frozenset(string.ascii_letters + string.digits + string.punctuation)


def message_group_id_problem(group_id: str) -> str | None:
    """Why SQS would refuse ``group_id`` as a MessageGroupId, or None when it is valid."""
    if not group_id:
        return "MessageGroupId must not be empty."
    if len(group_id) > MESSAGE_GROUP_ID_MAX_LENGTH:
        return f"MessageGroupId can be at most {MESSAGE_GROUP_ID_MAX_LENGTH} characters long."
    if not set(group_id) <= _MESSAGE_GROUP_ID_CHARACTERS:
        return "MessageGroupId can contain only alphanumeric characters and punctuation."
    return None


def _tenant(message: Any) -> tuple[str, str]:
    """The fair-queue tenant of a moto message: its group, or the message alone when it has none."""
    return ("group", message.group_id) if message.group_id is not None else ("message", message.id)


def fair_order(visible: Sequence[Any], queued: Iterable[Any]) -> list[Any]:
    """``visible`` (moto messages, oldest first) in the order a fair queue hands them out.

    ``queued`` is every message of the queue; those not visible are the ones in flight. Repeatedly
    the tenant with the fewest in flight gives its oldest waiting message, and then counts it as in
    flight; ties go to the tenant whose next message is oldest.
    """
    in_flight = Counter(_tenant(message) for message in queued if not message.visible)
    waiting: dict[tuple[str, str], deque[tuple[int, Any]]] = {}
    for position, message in enumerate(visible):
        waiting.setdefault(_tenant(message), deque()).append((position, message))
    heap = [(in_flight[tenant], messages[0][0], tenant) for tenant, messages in waiting.items()]
    heapq.heapify(heap)
    order: list[Any] = []
    while heap:
        taken, _, tenant = heapq.heappop(heap)
        messages = waiting[tenant]
        order.append(messages.popleft()[1])
        if messages:
            heapq.heappush(heap, (taken + 1, messages[0][0], tenant))
    return order


def sqs_fair_queues() -> None:
    """Make moto's standard queues behave as SQS fair queues (see the section's comment)."""
    from moto.sqs.exceptions import InvalidParameterValue
    from moto.sqs.models import Queue, SQSBackend

    if getattr(Queue, "_pixverse_fair", False):
        return
    Queue._pixverse_fair = True  # type: ignore[attr-defined]
    # moto's ReceiveMessage hands out ``Queue.messages`` (the visible ones) in that list's order, and
    # stops at the count asked for. The same property counts the visible messages for the queue's
    # attributes, which moto reads on every send and every message received: that count keeps moto's
    # cheaper list.
    visible_oldest_first: Callable[[Any], list[Any]] = Queue.__dict__["messages"].fget

    def messages(self: Any) -> list[Any]:
        visible = visible_oldest_first(self)
        if self.fifo_queue or all(message.group_id is None for message in visible):
            return visible  # one message per tenant: oldest first already is the fair order
        return fair_order(visible, self._messages)

    def approximate_number_of_messages(self: Any) -> int:
        return len(visible_oldest_first(self))

    Queue.messages = property(messages)  # type: ignore[assignment,method-assign]
    Queue.approximate_number_of_messages = property(approximate_number_of_messages)  # type: ignore[assignment,method-assign]

    original_validate = SQSBackend._validate_message

    def validate_message(self: Any, queue: Any, *args: Any, **kwargs: Any) -> None:
        # moto calls this for every entry of a batch before it sends any, so a bad group id refuses the
        # whole batch with nothing sent. moto checks no group id at all; FIFO queues are left as moto has them.
        group_id = kwargs.get("group_id", args[3] if len(args) > 3 else None)
        if not queue.fifo_queue and group_id is not None:
            problem = message_group_id_problem(str(group_id))
            if problem is not None:
                raise InvalidParameterValue(
                    f"Value {group_id} for parameter MessageGroupId is invalid. Reason: {problem}"
                )
        original_validate(self, queue, *args, **kwargs)

    SQSBackend._validate_message = validate_message  # type: ignore[method-assign]


# ------------------------------------------------------------------------------------------ EventBridge
# What moto 5.2's events backend lacks, measured against what AWS documents:
# - Size. "The total entry size must be less than 256KB", an entry counted as "Calculating PutEvents
#   event entry size" says: Time 14 bytes if given, Source, DetailType, Detail and each Resources
#   entry their UTF-8 bytes (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-putevent-size.html).
#   Over it AWS refuses the request: ValidationException "Total size of the entries in the request is
#   over the limit." moto takes any size.
# - Delivery is asynchronous on AWS: a target that cannot take an event (a deleted queue, a queue
#   policy that does not let EventBridge send) never fails PutEvents; EventBridge retries, then drops
#   the event or moves it to the target's dead-letter queue (EventBridge user guide, "Event retry
#   policy and using dead-letter queues"). moto delivers inside PutEvents, so a deleted target queue
#   failed the whole call. Here a failed delivery is logged and dropped (no retries, no target DLQ).
# - Permissions. An SQS target receives an event only if the queue's policy allows the service
#   principal events.amazonaws.com sqs:SendMessage, usually on the condition aws:SourceArn = the rule
#   (EventBridge user guide, "Using resource-based policies", Amazon SQS permissions:
#   https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-use-resource-based.html#eb-sqs-permissions).
#   moto delivers without a policy. Here the policy is evaluated: Allow and Deny statements whose
#   Principal is "*" or the service, whose Action and Resource match (wildcards), and whose Condition
#   uses ArnEquals, ArnLike, StringEquals or StringLike on aws:SourceArn / aws:SourceAccount; a
#   condition of another operator or key is taken as not met (an Allow it guards does not apply).
# - A DISABLED rule matches nothing on AWS; moto's delivers.
# Pattern matching is moto's own: it matches what this project's rules use (detail-type, source,
# nested detail fields, prefix / anything-but / numeric / exists), but not fields inside arrays of
# objects (AWS matches detail.data.outputs.media_type against each output; moto matches nothing).
EVENTBRIDGE_MAX_ENTRY_BYTES = 262_143  # "less than 256KB"
EVENTBRIDGE_SIZE_MESSAGE = "Total size of the entries in the request is over the limit."
EVENTBRIDGE_PRINCIPAL = "events.amazonaws.com"
_EVENTS_LOG = logging.getLogger("pixverse_local.eventbridge")


def putevents_entry_size(entry: Mapping[str, Any]) -> int:
    """An entry's size as EventBridge counts it ("Calculating PutEvents event entry size")."""
    size = 14 if entry.get("Time") is not None else 0
    for name in ("Source", "DetailType", "Detail"):
        if entry.get(name) is not None:
            size += utf8_size(str(entry[name]))
    return size + sum(utf8_size(str(r)) for r in entry.get("Resources") or [] if r is not None)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _principal_is_eventbridge(principal: Any) -> bool:
    if principal == "*":
        return True
    if not isinstance(principal, Mapping):
        return False
    return EVENTBRIDGE_PRINCIPAL in _as_list(principal.get("Service", [])) or "*" in _as_list(principal.get("AWS", []))


def _condition_holds(condition: Mapping[str, Any] | None, context: Mapping[str, str]) -> bool:
    for operator, tests in (condition or {}).items():
        if operator not in ("ArnEquals", "ArnLike", "StringEquals", "StringLike") or not isinstance(tests, Mapping):
            return False
        for key, expected in tests.items():
            actual = context.get(str(key).lower())
            if actual is None:
                return False
            like = operator.endswith("Like")
            if not any(fnmatch.fnmatchcase(actual, str(e)) if like else actual == str(e) for e in _as_list(expected)):
                return False
    return True


def queue_policy_lets_eventbridge_send(policy: Any, queue_arn: str, rule_arn: str, account_id: str) -> bool:
    """Whether an SQS queue policy lets EventBridge's rule ``rule_arn`` send to the queue (a
    matching Deny wins; no matching Allow: not allowed)."""
    if not policy:
        return False
    document = json.loads(policy) if isinstance(policy, str) else policy
    context = {"aws:sourcearn": rule_arn, "aws:sourceaccount": account_id}
    allowed = False
    for statement in _as_list(document.get("Statement", [])):
        if not _principal_is_eventbridge(statement.get("Principal")):
            continue
        actions = [str(a).lower() for a in _as_list(statement.get("Action", []))]
        if not any(fnmatch.fnmatchcase("sqs:sendmessage", a) for a in actions):
            continue
        if not any(fnmatch.fnmatchcase(queue_arn, str(r)) for r in _as_list(statement.get("Resource", "*"))):
            continue
        if not _condition_holds(statement.get("Condition"), context):
            continue
        if statement.get("Effect") == "Deny":
            return False
        allowed = allowed or statement.get("Effect") == "Allow"
    return allowed


def eventbridge_as_aws() -> None:
    """Hold moto's EventBridge to AWS's entry size, asynchronous targets and SQS target permissions."""
    from moto.events.exceptions import ValidationException
    from moto.events.models import EventsBackend, Rule

    if getattr(EventsBackend, "_pixverse_limited", False):
        return
    EventsBackend._pixverse_limited = True  # type: ignore[attr-defined]
    original_put_events = EventsBackend.put_events
    original_send = Rule.send_to_targets
    original_to_sqs = Rule._send_to_sqs_queue
    original_to_logs = Rule._send_to_cw_log_group

    def put_events(self: Any, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if sum(putevents_entry_size(entry) for entry in events) > EVENTBRIDGE_MAX_ENTRY_BYTES:
            raise ValidationException(EVENTBRIDGE_SIZE_MESSAGE)
        return original_put_events(self, events)

    def send_to_targets(self: Any, *args: Any, **kwargs: Any) -> None:
        if str(self.state).upper() == "DISABLED":
            return
        original_send(self, *args, **kwargs)

    def to_sqs(self: Any, resource_id: str, event: dict[str, Any], group_id: str | None = None) -> None:
        from moto.sqs.models import sqs_backends

        try:
            queue = sqs_backends[self.account_id][self.region_name].get_queue(resource_id)
            if not queue_policy_lets_eventbridge_send(queue.policy, queue.queue_arn, self.arn, self.account_id):
                _EVENTS_LOG.warning(
                    "rule %s: queue %s's policy does not let events.amazonaws.com send for this rule; event dropped",
                    self.arn,
                    resource_id,
                )
                return
            original_to_sqs(self, resource_id, event, group_id)
        except Exception:
            _EVENTS_LOG.warning("rule %s: target queue %s did not take the event; dropped", self.arn, resource_id)

    def to_logs(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            original_to_logs(self, *args, **kwargs)
        except Exception:
            _EVENTS_LOG.warning("rule %s: target log group did not take the event; dropped", self.arn)

    EventsBackend.put_events = put_events  # type: ignore[method-assign]
    Rule.send_to_targets = send_to_targets  # type: ignore[method-assign]
    Rule._send_to_sqs_queue = to_sqs  # type: ignore[method-assign]
    Rule._send_to_cw_log_group = to_logs  # type: ignore[method-assign]


def event_per_resolver() -> None:
    """Keep each API resolver's current event on the instance, not on the shared class."""
    from aws_lambda_powertools.event_handler import api_gateway
    from aws_lambda_powertools.utilities.data_classes.common import BaseProxyEvent

    resolver = api_gateway.ApiGatewayResolver
    original = resolver.resolve
    if getattr(original, "_per_instance", False):
        return

    def resolve(self: Any, event: Any, context: Any) -> Any:
        raw = event.raw_event if isinstance(event, BaseProxyEvent) else event
        # Instance attributes shadow the class-level ones for every read through this resolver.
        self.current_event = self._to_proxy_event(raw)
        self.lambda_context = context
        return original(self, event, context)

    resolve._per_instance = True  # type: ignore[attr-defined]
    resolver.resolve = resolve  # type: ignore[method-assign]


def presigned_url_checks() -> None:
    """Refuse presigned S3 requests as S3 does (presigned.py), before moto serves them."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    from pixverse_local.aws.presigned import checking_presigned_urls, local_secrets

    original = DomainDispatcherApplication.__call__
    if getattr(original, "_presigned_checked", False):
        return

    def call(self: Any, environ: dict[str, Any], start_response: Any) -> Any:
        return checking_presigned_urls(lambda e, r: original(self, e, r), secrets)(environ, start_response)

    secrets = local_secrets(os.environ)

    call._presigned_checked = True  # type: ignore[attr-defined]
    DomainDispatcherApplication.__call__ = call  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> None:
    """moto server (``python -m moto.server``'s arguments, plus ``--time-scale``) as AWS behaves.

    ``--time-scale`` defaults to ``LOCAL_TIME_SCALE``; a value that is not a positive number stops
    the server with a message naming it.
    """
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--time-scale", default=None)
    known, moto_args = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    raw_scale = known.time_scale if known.time_scale is not None else os.environ.get(TIME_SCALE_ENV)
    try:
        scale = parse_time_scale(raw_scale)
    except TimeScaleError as exc:
        sys.exit(str(exc))
    atomic_dynamodb_writes()
    aws_service_limits()
    eventbridge_as_aws()
    sqs_fair_queues()
    presigned_url_checks()
    scale_sqs_delays(scale)
    from moto.server import main as moto_main

    moto_main(moto_args)


if __name__ == "__main__":
    main()
