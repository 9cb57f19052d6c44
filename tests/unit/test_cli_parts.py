"""The CLI's parts without a stack: URL checks, how each kind of answer becomes an exit code,
global options on either side of the command, wait's live line on a terminal, the event line,
and events tail's queue (its policy, and its removal when the tail fails)."""

from __future__ import annotations

import io
import json
from typing import Any

import boto3
import httpx
import pytest
from moto import mock_aws
from pixverse_cli.__main__ import StatusLine, _parser, _range_start
from pixverse_cli.client import (
    EXIT_API,
    EXIT_NOT_API,
    EXIT_SERVER,
    EXIT_USAGE,
    ApiClient,
    CliError,
    check_api_url,
    stack_output,
)
from pixverse_cli.events_tail import EventTail, event_line


# ----------------------------------------------------------------------------------- URLs
@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("127.0.0.1:3990", "has no scheme: did you mean http://127.0.0.1:3990?"),
        ("localhost:3000/", "has no scheme: did you mean http://localhost:3000/?"),
        ("abc.execute-api.eu-west-1.amazonaws.com", "did you mean https://abc.execute-api.eu-west-1.amazonaws.com?"),
        ("ftp://example.com", "is not an http:// or https:// URL"),
        ("http://", "is not an http:// or https:// URL"),
        ("http://127.0.0.1:99999", "has a bad port"),
    ],
)
def test_a_bad_api_url_is_refused_with_what_is_wrong(url: str, said: str) -> None:
    with pytest.raises(CliError) as caught:
        check_api_url(url, "--api-url")

    assert caught.value.exit_code == EXIT_USAGE
    assert said in caught.value.message and caught.value.message.startswith(f"--api-url {url!r}")


def test_a_good_api_url_loses_its_trailing_slash() -> None:
    assert check_api_url(" https://x.example/Prod/ ", "--api-url") == "https://x.example/Prod"


# ----------------------------------------------------------------------------------- answers
def _client_answering(status: int, body: bytes, content_type: str) -> ApiClient:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers={"Content-Type": content_type})

    http = httpx.Client(base_url="http://127.0.0.1:9", transport=httpx.MockTransport(answer))
    return ApiClient("http://127.0.0.1:9", http)


@pytest.mark.parametrize(
    ("status", "body", "content_type", "exit_code", "said"),
    [
        (
            200,
            b"<html>hello</html>",
            "text/html",
            EXIT_NOT_API,
            "is not the pixverse-jobs API: GET /jobs/j answered 200",
        ),
        (200, b"[1, 2]", "application/json", EXIT_NOT_API, "is not the pixverse-jobs API"),
        (200, b'{"id": "x"}', "application/json", EXIT_NOT_API, "is not the pixverse-jobs API"),
        (404, b'{"error": "Not Found", "message": "x"}', "application/json", EXIT_NOT_API, "api= URL"),
        (502, b"<html>Bad Gateway</html>", "text/html", EXIT_SERVER, "answered 502 (text/html, not JSON)"),
        (403, b'{"message": "Forbidden"}', "application/json", EXIT_API, "403 http_403: API Gateway: Forbidden"),
        (
            409,
            b'{"error": {"code": "already_ended", "message": "m"}}',
            "application/json",
            EXIT_API,
            "409 already_ended",
        ),
    ],
)
def test_each_kind_of_answer_has_its_exit_code(
    status: int, body: bytes, content_type: str, exit_code: int, said: str
) -> None:
    client = _client_answering(status, body, content_type)

    with pytest.raises(CliError) as caught:
        client.request("GET", "/jobs/j", expect=("job_id", "status"))

    assert caught.value.exit_code == exit_code
    assert said in caught.value.message


def test_an_answer_of_the_expected_shape_is_returned() -> None:
    client = _client_answering(200, b'{"job_id": "j", "status": "QUEUED"}', "application/json")

    assert client.request("GET", "/jobs/j", expect=("job_id", "status")) == {"job_id": "j", "status": "QUEUED"}


# ----------------------------------------------------------------------------------- options
@pytest.mark.parametrize(
    "argv",
    [
        ["--json", "--api-url", "http://a", "list"],
        ["list", "--json", "--api-url", "http://a"],
        ["--api-url", "http://b", "list", "--api-url", "http://a", "--json"],
    ],
)
def test_global_options_are_taken_on_either_side_and_the_later_wins(argv: list[str]) -> None:
    args = _parser().parse_args(argv)

    assert (args.json, args.api_url, args.command) == (True, "http://a", "list")


def test_global_options_keep_their_defaults_when_not_given() -> None:
    args = _parser().parse_args(["get", "job_1"])

    assert (args.json, args.api_url, args.stack_name, args.region, args.token) == (False, None, None, None, None)


# ----------------------------------------------------------------------------------- wait's line
class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _job(status: str, **extra: Any) -> dict[str, Any]:
    return {"job_id": "job_1", "status": status, **extra}


def test_on_a_terminal_the_line_is_redrawn_in_place_and_each_status_stays() -> None:
    terminal = FakeTerminal()
    line = StatusLine(terminal)

    line.show(_job("QUEUED"), 1.0)
    line.tick(2.0)
    line.show(_job("PROCESSING"), 65.0)
    line.end()

    drawn = terminal.getvalue()
    assert drawn.count("\r\x1b[2K") == 3
    assert "[   2.0s] job_1: QUEUED (step 3 of 6; queued at the gateway)\n" in drawn
    assert drawn.endswith("[  1m05s] job_1: QUEUED -> PROCESSING (step 4 of 6; generating)\n")


def test_piped_the_line_is_written_once_per_change() -> None:
    pipe = io.StringIO()
    line = StatusLine(pipe)

    line.show(_job("ACCEPTED", submit_attempts=0), 0.0)
    line.tick(1.0)
    line.show(_job("ACCEPTED", submit_attempts=0), 2.0)
    line.show(_job("ACCEPTED", submit_attempts=1, last_submit_error="429 rate_limited"), 3.0)
    line.end()

    assert pipe.getvalue().splitlines() == [
        "[   0.0s] job_1: ACCEPTED (step 1 of 6; waiting its turn to be sent to the gateway)",
        "[   3.0s] job_1: ACCEPTED (step 1 of 6; waiting its turn to be sent to the gateway; "
        "attempt 2, last: 429 rate_limited)",
    ]


def test_content_range_start_is_read() -> None:
    assert _range_start("bytes 100-1048575/1048576") == 100
    assert _range_start(None) is None


# ----------------------------------------------------------------------------------- events tail
def test_event_line_has_time_type_job_status_and_error_code() -> None:
    with open("events/event_failed.json") as file:
        event = json.load(file)

    fields = event_line(event).split()

    assert fields == [event["time"], event["type"], event["subject"], "FAILED", event["data"]["error"]["code"]]


@mock_aws
def test_tail_queue_may_receive_from_the_topic_only_and_is_removed_when_the_tail_fails() -> None:
    sqs = boto3.client("sqs", region_name="us-east-1")
    sns = boto3.client("sns", region_name="us-east-1")
    topic = sns.create_topic(Name="events")["TopicArn"]

    with pytest.raises(RuntimeError), EventTail(sqs, sns, topic) as tail:
        policy = json.loads(
            sqs.get_queue_attributes(QueueUrl=tail.queue_url, AttributeNames=["Policy"])["Attributes"]["Policy"]
        )
        (subscription,) = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
        raise RuntimeError("the tail failed")

    (statement,) = policy["Statement"]
    assert statement["Principal"] == {"Service": "sns.amazonaws.com"}
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": topic}}
    assert subscription["Endpoint"].endswith(tail.queue_name)
    assert sqs.list_queues(QueueNamePrefix="pixverse-jobs-tail-").get("QueueUrls", []) == []
    assert sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"] == []


@mock_aws
def test_a_deployed_stacks_topic_comes_from_its_outputs_and_a_missing_stack_is_one_line() -> None:
    template = {
        "Resources": {"EventsTopic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"EventsTopicArn": {"Value": {"Ref": "EventsTopic"}}},
    }
    boto3.client("cloudformation", region_name="eu-west-1").create_stack(
        StackName="pixverse-jobs", TemplateBody=json.dumps(template)
    )

    topic = stack_output("pixverse-jobs", "eu-west-1", "EventsTopicArn")

    assert topic.startswith("arn:aws:sns:eu-west-1:")
    with pytest.raises(CliError) as caught:
        stack_output("not-there", "eu-west-1", "EventsTopicArn")
    assert caught.value.exit_code == EXIT_API
    assert caught.value.message.startswith("reading stack not-there's outputs: ValidationError:")
    with pytest.raises(CliError) as caught:
        stack_output("pixverse-jobs", "eu-west-1", "ApiUrl")
    assert "stack pixverse-jobs has no ApiUrl output (is it a pixverse-jobs stack?)" in caught.value.message
