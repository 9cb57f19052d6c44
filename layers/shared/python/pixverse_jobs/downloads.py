"""Short-lived presigned download URLs for delivered objects."""

from __future__ import annotations

from typing import Any

import boto3


class DownloadLinker:
    def __init__(self, expiry_seconds: int, s3_client: Any = None) -> None:
        self._expiry = expiry_seconds
        self._s3 = s3_client or boto3.client("s3")

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
