"""Who owns a job: the caller's stable principal, not the session it called from (issue 13, 2.2)."""

from __future__ import annotations

from typing import Any

import pytest
from pixverse_jobs.jobs import caller_of, principal_owner


def _iam_context(user_arn: str) -> dict[str, Any]:
    return {"authorizer": {"iam": {"userArn": user_arn, "accountId": "123456789012"}}}


def test_two_sessions_of_one_role_are_the_same_owner() -> None:
    # Given two STS sessions of one role (e.g. two ECS tasks)
    first = caller_of(_iam_context("arn:aws:sts::123456789012:assumed-role/video-backend/task-1a2b"))
    second = caller_of(_iam_context("arn:aws:sts::123456789012:assumed-role/video-backend/task-9z8y"))
    # Then both own jobs as the role
    assert first == second == "arn:aws:iam::123456789012:role/video-backend"


def test_role_and_user_of_the_same_name_are_different_owners() -> None:
    role = caller_of(_iam_context("arn:aws:sts::123456789012:assumed-role/video-backend/s1"))
    user = caller_of(_iam_context("arn:aws:iam::123456789012:user/video-backend"))
    assert user == "arn:aws:iam::123456789012:user/video-backend"
    assert role != user


def test_same_role_name_in_another_account_is_another_owner() -> None:
    assert principal_owner("arn:aws:sts::111111111111:assumed-role/r/s") != principal_owner(
        "arn:aws:sts::222222222222:assumed-role/r/s"
    )


@pytest.mark.parametrize(
    ("user_arn", "owner"),
    [
        ("arn:aws-cn:sts::123456789012:assumed-role/r/s", "arn:aws-cn:iam::123456789012:role/r"),
        ("arn:aws-us-gov:sts::123456789012:assumed-role/r/s", "arn:aws-us-gov:iam::123456789012:role/r"),
        ("arn:aws-iso-b:sts::123456789012:assumed-role/r/s", "arn:aws-iso-b:iam::123456789012:role/r"),
    ],
)
def test_role_owner_keeps_the_partition(user_arn: str, owner: str) -> None:
    assert principal_owner(user_arn) == owner


def test_role_path_given_before_the_name_is_kept() -> None:
    assert (
        principal_owner("arn:aws:sts::123456789012:assumed-role/service-role/teams/r/session")
        == "arn:aws:iam::123456789012:role/service-role/teams/r"
    )


@pytest.mark.parametrize(
    "user_arn",
    [
        "arn:aws:iam::123456789012:user/path/to/alice",  # IAM user, with its path
        "arn:aws:iam::123456789012:root",  # the account's root user
        "arn:aws:sts::123456789012:federated-user/bob",  # GetFederationToken's named user
        "arn:aws:iam::123456789012:role/already-a-role",
    ],
)
def test_stable_principals_own_by_their_own_arn(user_arn: str) -> None:
    assert caller_of(_iam_context(user_arn)) == user_arn


@pytest.mark.parametrize(
    "user_arn",
    [
        "local",  # the local stack's caller without X-Local-Principal-Arn
        "arn:aws:sts::123456789012:assumed-role/no-session",  # no session part
        "arn:aws:sts::123456789012:assumed-role//s",  # empty role name
        "arn:aws:sts::12345:assumed-role/r/s",  # account id not 12 digits
        "arn:nope:sts::123456789012:assumed-role/r/s",  # not an AWS partition
        "arn:aws:sts::123456789012:assumed-role/r/s/",  # trailing slash
        "arn:aws:sts::123456789012:assumed-role/r/s\narn:aws:iam::1:root",  # newline smuggling
    ],
)
def test_malformed_arn_is_kept_verbatim_not_mapped_to_a_role(user_arn: str) -> None:
    # An ARN that is not a well-formed role session is not rewritten into someone's role.
    assert caller_of(_iam_context(user_arn)) == user_arn


def test_jwt_caller_owns_by_sub() -> None:
    assert caller_of({"authorizer": {"jwt": {"claims": {"sub": "user-123"}}}}) == "user-123"


def test_no_authorizer_is_no_caller() -> None:
    assert caller_of({}) is None
    assert caller_of({"authorizer": {"iam": {"userArn": ""}}}) is None
