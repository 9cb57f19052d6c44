"""Short-lived presigned download URLs for delivered objects."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

# SigV4 on the regional virtual-host endpoint: S3 refuses SigV2 URLs for newer buckets.
PRESIGN_CONFIG = Config(signature_version="s3v4", s3={"addressing_style": "virtual"})


class DownloadLinker:
    def __init__(self, expiry_seconds: int, s3_client: Any = None) -> None:
        self._expiry = expiry_seconds
        self._s3 = s3_client or boto3.client("s3", config=PRESIGN_CONFIG)

    def with_links(self, outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``outputs`` with a ``download_url`` (valid ``expiry_seconds``) on each object."""
        return [
            {
                **output,
                "download_url": self._s3.generate_presigned_url(
                    "get_object",
                    Params={"Bucket": output["bucket"], "Key": output["key"]},
                    ExpiresIn=self._expiry,
                ),
                "download_url_expires_in": self._expiry,
            }
            for output in outputs
        ]
