"""Who the local HTTP API says the caller is: IAM principals from X-Local-Principal-Arn, JWT claims."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from pixverse_local.aws.authorizers import AuthorizationError, IamCaller, iam_caller, jwt_context


def _token(claims: dict[str, Any]) -> str:
    def segment(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"Bearer {segment({'alg': 'none'})}.{segment(claims)}."


def test_user_with_a_path_keeps_it_in_its_arn_and_its_id_follows_the_name() -> None:
    plain = IamCaller.from_arn("arn:aws:iam::123456789012:user/bob")
    with_path = IamCaller.from_arn("arn:aws:iam::123456789012:user/division/team/bob")

    assert with_path.user_arn == "arn:aws:iam::123456789012:user/division/team/bob"
    assert with_path.user_id == plain.user_id  # one user name, one id
    assert len(plain.user_id) == 21 and len(plain.access_key) == 20


def test_same_user_name_in_two_accounts_gets_two_ids() -> None:
    one = IamCaller.from_arn("arn:aws:iam::111111111111:user/bob")
    two = IamCaller.from_arn("arn:aws:iam::222222222222:user/bob")

    assert one.user_id != two.user_id
    assert (one.account_id, two.account_id) == ("111111111111", "222222222222")


def test_root_caller_is_identified_by_its_account() -> None:
    root = IamCaller.from_arn("arn:aws:iam::123456789012:root")

    assert root.user_id == root.account_id == "123456789012"


def test_headers_without_the_principal_header_give_the_local_caller() -> None:
    assert iam_caller({}) == IamCaller.local()
    assert iam_caller({"x-local-principal-arn": " arn:aws:iam::123456789012:user/bob "}).user_arn.endswith("user/bob")


def test_refusal_names_the_header_without_echoing_a_long_value() -> None:
    with pytest.raises(AuthorizationError) as caught:
        IamCaller.from_arn("x" * 5000)

    assert caught.value.status == 403 and caught.value.message == "Forbidden"
    assert "X-Local-Principal-Arn" in str(caught.value) and len(str(caught.value)) < 400


def test_jwt_claims_are_strings_as_api_gateway_passes_them() -> None:
    context = jwt_context(_token({"sub": "u-1", "iat": 1700000000, "groups": ["a", "b"], "admin": False}))

    assert context["jwt"]["claims"] == {"sub": "u-1", "iat": "1700000000", "groups": "[a b]", "admin": "false"}
    assert context["jwt"]["scopes"] is None


def test_jwt_without_bearer_prefix_is_read_too() -> None:
    assert jwt_context(_token({"sub": "u-1"}).removeprefix("Bearer "))["jwt"]["claims"]["sub"] == "u-1"


@pytest.mark.parametrize("claims", [{"exp": 999}, {"nbf": 2000}, {"exp": "soon"}])
def test_jwt_outside_its_validity_is_refused_401(claims: dict[str, Any]) -> None:
    with pytest.raises(AuthorizationError) as caught:
        jwt_context(_token({"sub": "u-1", **claims}), now=1000)

    assert caught.value.status == 401 and caught.value.message == "Unauthorized"
