"""The HTTP API's authorizers as the local API emulates them: who the caller is, as the event tells it.

**IAM routes** (``AWS_IAM``). On AWS the caller signs the request with SigV4 and API Gateway puts the
signer in ``requestContext.authorizer.iam``. Nothing is signed locally: the local-only request header
``X-Local-Principal-Arn: <ARN>`` names the caller, an IAM user
(``arn:aws:iam::123456789012:user/NAME``, with its path if any), an assumed role's STS session
(``arn:aws:sts::123456789012:assumed-role/ROLE/SESSION``) or the account root
(``arn:aws:iam::123456789012:root``). The event then carries what API Gateway gives for that signer:

* ``userArn``: the ARN as given; ``accountId``: the ARN's account;
* ``userId`` and ``callerId``: the principal's unique id in IAM's shapes, ``AIDA...`` for a user,
  ``AROA...:SESSION`` for an assumed role (the ``aws:userid`` of the IAM policy variables), the
  account id for root; the ``AIDA``/``AROA`` part is derived from the user or role name, so it is
  stable for a name as IAM's are for an entity;
* ``accessKey``: an access key id, ``AKIA...`` (a user's long-term key) or ``ASIA...`` (temporary
  credentials of a session), derived from the ARN.

A header that is not such an ARN is refused with 403 ``{"message": "Forbidden"}``, as API Gateway
refuses a request whose signature does not verify. Local deviation: without the header the caller is
``local`` (userArn, userId and callerId ``local``, account ``000000000000``, access key ``LOCAL``)
where AWS would refuse the unsigned request.
https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html
(payload format 2.0, ``authorizer.iam``),
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_identifiers.html#identifiers-unique-ids
(AIDA, AROA, AKIA, ASIA prefixes) and
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_variables.html (``aws:userid``).

**JWT routes.** The token comes from the ``Authorization`` header (a ``Bearer`` prefix is optional,
as API Gateway takes it); a missing token, one that is not three base64url segments with a JSON
object as payload, or one whose ``exp`` has passed or ``nbf`` not come yet answers 401
``{"message": "Unauthorized"}``. The claims go to ``authorizer.jwt.claims`` with every value a string
(lists as ``[a b]``, as API Gateway shows them), the ``scope``/``scp`` claim's scopes to
``authorizer.jwt.scopes``. Local deviation: tokens may be unsigned and are not checked against the
authorizer's issuer and audience, so a test can make any caller.
https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-jwt-authorizer.html
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

LOCAL_PRINCIPAL_HEADER = "x-local-principal-arn"
DEFAULT_CALLER = "local"
LOCAL_ACCOUNT_ID = "000000000000"
LOCAL_ACCESS_KEY = "LOCAL"

# IAM names: users and roles 1-64 (users) / 1-64 (roles) of [\w+=,.@-]; role session names 2-64.
# https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html
_NAME = r"[\w+=,.@-]{1,64}"
_PRINCIPAL_ARN = re.compile(
    r"arn:(?P<partition>aws|aws-cn|aws-us-gov):(?P<service>iam|sts)::(?P<account>\d{12}):"
    r"(?:(?P<root>root)"
    rf"|user(?P<path>(?:/[\x21-\x7e]+)*?)/(?P<user>{_NAME})"
    rf"|assumed-role/(?P<role>{_NAME})/(?P<session>[\w+=,.@-]{{2,64}}))",
    re.ASCII,
)
_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


class AuthorizationError(Exception):
    """API Gateway refuses the request before the function: ``status`` and ``message`` say how."""

    def __init__(self, status: int, message: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.message = message


def _forbidden(reason: str) -> AuthorizationError:
    return AuthorizationError(403, "Forbidden", reason)


def _unauthorized(reason: str) -> AuthorizationError:
    return AuthorizationError(401, "Unauthorized", reason)


def _fake_id(prefix: str, seed: str, length: int) -> str:
    """``prefix`` and upper-case base32 characters derived from ``seed`` (IAM ids are 21 characters)."""
    digest = hashlib.sha256(seed.encode()).digest()
    body = "".join(_ID_ALPHABET[byte % 32] for byte in digest)
    return prefix + body[: length - len(prefix)]


@dataclass(frozen=True)
class IamCaller:
    """The SigV4 signer API Gateway would see: what ``authorizer.iam`` carries."""

    user_arn: str
    account_id: str
    user_id: str
    access_key: str

    @classmethod
    def local(cls) -> IamCaller:
        """The caller of a request without ``X-Local-Principal-Arn``."""
        return cls(DEFAULT_CALLER, LOCAL_ACCOUNT_ID, DEFAULT_CALLER, LOCAL_ACCESS_KEY)

    @classmethod
    def from_arn(cls, arn: str) -> IamCaller:
        """The caller for an IAM user, assumed-role or root ARN; :class:`AuthorizationError` (403) otherwise."""
        match = _PRINCIPAL_ARN.fullmatch(arn)
        if match is None:
            raise _forbidden(f"X-Local-Principal-Arn {arn[:200]!r} is not an IAM user, assumed-role or root ARN")
        service, account = match.group("service"), match.group("account")
        if match.group("root"):
            if service != "iam":
                raise _forbidden("the root ARN is arn:aws:iam::ACCOUNT:root")
            return cls(arn, account, account, _fake_id("AKIA", arn, 20))
        if match.group("user"):
            if service != "iam":
                raise _forbidden("an IAM user's ARN is arn:aws:iam::ACCOUNT:user/NAME")
            user_id = _fake_id("AIDA", f"{account}:user:{match.group('user')}", 21)
            return cls(arn, account, user_id, _fake_id("AKIA", arn, 20))
        if service != "sts":
            raise _forbidden("an assumed role's ARN is arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION")
        role_id = _fake_id("AROA", f"{account}:role:{match.group('role')}", 21)
        return cls(arn, account, f"{role_id}:{match.group('session')}", _fake_id("ASIA", arn, 20))

    def context(self) -> dict[str, Any]:
        """``requestContext.authorizer`` for this caller."""
        return {
            "iam": {
                "accessKey": self.access_key,
                "accountId": self.account_id,
                "callerId": self.user_id,
                "cognitoIdentity": None,
                "principalOrgId": None,
                "userArn": self.user_arn,
                "userId": self.user_id,
            }
        }


def iam_caller(headers: Mapping[str, str]) -> IamCaller:
    """The caller named by the (lower-cased) request headers, or the local caller."""
    arn = headers.get(LOCAL_PRINCIPAL_HEADER)
    if arn is None:
        return IamCaller.local()
    return IamCaller.from_arn(arn.strip())


# ------------------------------------------------------------------------------------------ JWT
def _segment(text: str) -> Any:
    padded = text + "=" * (-len(text) % 4)
    return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))


def _claim_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + " ".join(_claim_text(item) for item in value) + "]"
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def jwt_context(authorization: str | None, *, now: float | None = None) -> dict[str, Any]:
    """``requestContext.authorizer`` for a JWT route; :class:`AuthorizationError` (401) for a bad token."""
    if not authorization or not authorization.strip():
        raise _unauthorized("no Authorization header")
    token = authorization.strip()
    if token[:7].lower() == "bearer ":
        token = token[7:].strip()
    parts = token.split(".")
    if len(parts) != 3:
        raise _unauthorized("the token is not a JWT (header.payload.signature)")
    try:
        header, claims = _segment(parts[0]), _segment(parts[1])
    except (ValueError, UnicodeError, binascii.Error) as exc:
        raise _unauthorized(f"the token's segments are not base64url JSON: {exc}") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise _unauthorized("the token's header and payload must be JSON objects")
    moment = time.time() if now is None else now
    for name in ("exp", "nbf"):
        if name not in claims:
            continue
        value = claims[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _unauthorized(f"the token's {name} claim is not a number")
        if (name == "exp" and moment >= value) or (name == "nbf" and moment < value):
            raise _unauthorized(f"the token's {name} claim refuses it now")
    raw_scopes = claims.get("scope", claims.get("scp"))
    scopes: list[str] | None = None
    if isinstance(raw_scopes, str):
        scopes = raw_scopes.split()
    elif isinstance(raw_scopes, list):
        scopes = [str(scope) for scope in raw_scopes]
    return {"jwt": {"claims": {name: _claim_text(value) for name, value in claims.items()}, "scopes": scopes}}
