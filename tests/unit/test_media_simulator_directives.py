"""The gateway simulator's media-delivery directives (parsing; their effect on served media is
exercised end to end in tests/integration/test_delivery.py)."""

from __future__ import annotations

import pytest
from pixverse_local.gateway_sim import parse_directives


def test_media_directives_are_parsed() -> None:
    directives = parse_directives(
        "a cat [sim:media-url=https://evil.example/v.mp4?x=1] [sim:redirect=http://169.254.169.254/latest/]"
        " [sim:hops=3] [sim:media-status=503] [sim:content-type=Text/HTML] [sim:no-ranges]"
    )
    assert directives.media_url == "https://evil.example/v.mp4?x=1"
    assert directives.redirect == "http://169.254.169.254/latest/"
    assert directives.hops == 3
    assert directives.media_status == 503
    assert directives.content_type == "text/html"
    assert directives.ranges is False


def test_without_media_directives_media_is_served_plainly() -> None:
    directives = parse_directives("a cat [sim:cut=1]")
    assert (directives.media_url, directives.redirect, directives.hops) == (None, None, 0)
    assert (directives.media_status, directives.content_type, directives.ranges) == (None, None, True)


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        ("[sim:media-url=ftp://x/y]", r"needs an http\(s\) URL"),
        ("[sim:redirect]", r"needs an http\(s\) URL"),
        ("[sim:content-type=video]", "needs a media type"),
        ("[sim:media-status=200]", "between 400 and 599"),
        ("[sim:hops=11]", "between 0 and 10"),
        ("[sim:no-ranges=1]", "takes no value"),
    ],
)
def test_bad_media_directive_is_refused_naming_it(prompt: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_directives(prompt)
