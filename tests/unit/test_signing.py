from __future__ import annotations

import hashlib
import hmac

from pixverse_jobs.signing import sign, verify, webhook_url


def test_sign_is_hmac_sha256_hex_of_job_id() -> None:
    expected = hmac.new(b"s3cret", b"job_1", hashlib.sha256).hexdigest()
    assert sign("job_1", "s3cret") == expected


def test_verify_accepts_current_or_previous_secret() -> None:
    sig = sign("job_1", "old")
    assert verify("job_1", sig, ["new", "old"])
    assert not verify("job_1", sig, ["new"])


def test_verify_rejects_missing_or_other_jobs_signature() -> None:
    assert not verify("job_1", None, ["k"])
    assert not verify("job_1", "", ["k"])
    assert not verify("job_2", sign("job_1", "k"), ["k"])


def test_webhook_url_carries_job_and_signature() -> None:
    url = webhook_url("https://api.example.com/", "job_1", "k")
    assert url == f"https://api.example.com/webhooks/pixazo/job_1?sig={sign('job_1', 'k')}"
