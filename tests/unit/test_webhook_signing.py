"""Signed callback URLs under key rotation: SignatureVerifier over SecretReader, against moto."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from pixverse_jobs.errors import SecretReadFailed
from pixverse_jobs.secrets import SecretReader
from pixverse_jobs.signing import SignatureVerifier, sign

JOB = "job_0123456789abcdef0123456789abcdef"
OLD, NEW, NEWEST = "old-secret-" + "a" * 53, "new-secret-" + "b" * 53, "newest-secret-" + "c" * 50


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Calls:
    """GetSecretValue calls on a client, with the version stage each asked for."""

    def __init__(self, client: Any) -> None:
        self.stages: list[str] = []
        client.meta.events.register("before-parameter-build.secrets-manager.GetSecretValue", self._record)

    def _record(self, params: dict[str, Any], **_: Any) -> None:
        self.stages.append(params.get("VersionStage", "AWSCURRENT"))

    def take(self) -> list[str]:
        stages, self.stages = self.stages, []
        return stages


@pytest.fixture
def sm() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("secretsmanager")
        client.create_secret(Name="signing", SecretString=OLD)
        yield client


def _verifier(client: Any, clock: Clock) -> SignatureVerifier:
    return SignatureVerifier(SecretReader(client, clock=clock), "signing", refresh_after=30.0, clock=clock)


def test_current_secret_verifies_without_ever_fetching_the_previous_one(sm: Any) -> None:
    calls = Calls(sm)
    verifier = _verifier(sm, Clock())
    assert verifier.verify(JOB, sign(JOB, OLD))
    assert verifier.verify(JOB, sign(JOB, OLD).upper())  # hex is case-insensitive
    assert calls.take() == ["AWSCURRENT"]


def test_url_signed_before_a_rotation_verifies_with_the_previous_version(sm: Any) -> None:
    issued_before = sign(JOB, OLD)
    sm.put_secret_value(SecretId="signing", SecretString=NEW)  # rotation: OLD is now AWSPREVIOUS
    verifier = _verifier(sm, Clock())  # a container started after the rotation
    calls = Calls(sm)

    assert verifier.verify(JOB, sign(JOB, NEW))
    assert verifier.verify(JOB, issued_before)
    assert verifier.verify(JOB, issued_before)
    # The previous version was fetched lazily, once, then cached.
    assert calls.take() == ["AWSCURRENT", "AWSPREVIOUS"]


def test_never_rotated_secret_tolerates_a_missing_previous_version_and_caches_that(sm: Any) -> None:
    calls = Calls(sm)
    verifier = _verifier(sm, Clock())
    forged = sign(JOB, "forged")
    assert not verifier.verify(JOB, forged)
    assert not verifier.verify(JOB, forged)
    assert not verifier.verify(JOB, forged)
    assert calls.take() == ["AWSCURRENT", "AWSPREVIOUS"]


def test_stale_cached_current_after_a_rotation_is_refreshed_once_per_interval(sm: Any) -> None:
    # A warm container cached OLD; then the secret rotates and a fresh submit signs with NEW.
    clock = Clock()
    verifier = _verifier(sm, clock)
    assert verifier.verify(JOB, sign(JOB, OLD))
    assert not verifier.verify(JOB, sign(JOB, "forged"))  # caches "no previous version"
    sm.put_secret_value(SecretId="signing", SecretString=NEW)
    clock.now += 31
    calls = Calls(sm)

    assert verifier.verify(JOB, sign(JOB, NEW))
    assert calls.take() == ["AWSCURRENT", "AWSPREVIOUS"]  # one forced re-read of both versions
    assert verifier.verify(JOB, sign(JOB, OLD))  # the old URLs still work (now AWSPREVIOUS)
    assert not verifier.verify(JOB, sign(JOB, "forged"))  # within the interval: no re-read
    assert calls.take() == []


def test_forged_requests_cannot_force_more_than_one_reread_per_interval(sm: Any) -> None:
    clock = Clock()
    verifier = _verifier(sm, clock)
    verifier.verify(JOB, sign(JOB, OLD))
    calls = Calls(sm)
    for _ in range(50):
        clock.now += 1
        assert not verifier.verify(JOB, sign(JOB, "forged"))
    # 50 s of forged requests: the first looks up AWSPREVIOUS, then one re-read of both at 30 s.
    assert calls.take() == ["AWSPREVIOUS", "AWSCURRENT", "AWSPREVIOUS"]


@pytest.mark.parametrize("signature", [None, "", "abc", "0" * 63, "g" * 64, "ü" * 64, sign(JOB, OLD) + "00"])
def test_malformed_signature_is_refused_without_reading_the_secret(sm: Any, signature: str | None) -> None:
    calls = Calls(sm)
    assert not _verifier(sm, Clock()).verify(JOB, signature)
    assert calls.take() == []


def test_another_jobs_signature_is_refused(sm: Any) -> None:
    assert not _verifier(sm, Clock()).verify(JOB, sign("job_another", OLD))


def test_previous_version_lookup_failure_other_than_not_found_propagates(sm: Any) -> None:
    # A throttled or denied lookup must not turn into a 401: the gateway's retry should succeed.
    def throttled(params: dict[str, Any], **_: Any) -> None:
        if params.get("VersionStage") == "AWSPREVIOUS":
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "GetSecretValue")

    sm.meta.events.register("before-parameter-build.secrets-manager.GetSecretValue", throttled)
    with pytest.raises(SecretReadFailed, match="ThrottlingException"):
        _verifier(sm, Clock()).verify(JOB, sign(JOB, NEWEST))


def test_secret_reader_keeps_current_and_previous_in_separate_caches(sm: Any) -> None:
    sm.put_secret_value(SecretId="signing", SecretString=NEW)
    reader = SecretReader(sm)
    assert reader.get("signing") == NEW
    assert reader.get_previous("signing") == OLD
    assert reader.get("signing") == NEW


def test_secret_reader_caches_each_version_for_max_age_then_reads_again(sm: Any) -> None:
    clock = Clock()
    calls = Calls(sm)
    reader = SecretReader(sm, max_age=300, clock=clock)

    assert [reader.get("signing") for _ in range(3)] == [OLD] * 3
    assert reader.get_previous("signing") is None  # never rotated: that answer is cached too
    assert reader.get_previous("signing") is None
    assert calls.take() == ["AWSCURRENT", "AWSPREVIOUS"]

    sm.put_secret_value(SecretId="signing", SecretString=NEW)
    clock.now += 299
    assert (reader.get("signing"), reader.get_previous("signing")) == (OLD, None)
    assert calls.take() == []
    clock.now += 2
    assert (reader.get("signing"), reader.get_previous("signing")) == (NEW, OLD)
    assert calls.take() == ["AWSCURRENT", "AWSPREVIOUS"]
    assert reader.get("signing", force_fetch=True) == NEW
    assert calls.take() == ["AWSCURRENT"]


def test_secret_reader_failure_names_the_secret_and_never_a_value(sm: Any) -> None:
    with pytest.raises(SecretReadFailed, match=r"missing.*ResourceNotFoundException"):
        SecretReader(sm).get("missing")

    def denied(params: dict[str, Any], **_: Any) -> None:
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": OLD}}, "GetSecretValue")

    sm.meta.events.register("before-parameter-build.secrets-manager.GetSecretValue", denied)
    with pytest.raises(SecretReadFailed) as failure:
        SecretReader(sm).get("signing")
    assert "AccessDeniedException" in str(failure.value) and OLD not in str(failure.value)
