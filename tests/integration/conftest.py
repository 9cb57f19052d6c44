"""The local stack, started once for the integration tests as a user starts it
(``python -m pixverse_local`` in its own process), reached over real HTTP on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pixverse_local.harness import EventInbox, LocalClient, StackProcess

# The bucket s3:// image inputs may come from (the stack's InputBuckets, which it creates locally).
INPUT_BUCKET = "pixverse-it-inputs"


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    log: Path = tmp_path_factory.mktemp("stack") / "local-stack.log"
    # AWS's delays at 1/1000 (LOCAL_TIME_SCALE): the copy queue's 5400 s visibility timeout lasts
    # 5.4 s, so a failed copy comes back in seconds and an in-flight one is not redelivered. The
    # reconciler keeps its 10 s (rate(5 minutes) would be 0.3 s at this scale).
    env = {"LOCAL_TIME_SCALE": "0.001", "LOCAL_RECONCILE_EVERY_SECONDS": "10", "INPUT_BUCKETS": INPUT_BUCKET}
    process = StackProcess(log_path=log, env=env)
    process.start()
    yield process
    code = process.stop()
    assert code == 0, f"local stack exited {code}; log: {log}"


@pytest.fixture(scope="session")
def client(stack: StackProcess) -> Iterator[LocalClient]:
    assert stack.ready is not None
    c = LocalClient(stack.ready)
    yield c
    c.close()


@pytest.fixture
def inbox(client: LocalClient) -> Iterator[EventInbox]:
    box = EventInbox(client)
    yield box
    box.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in item.nodeid:
            item.add_marker(pytest.mark.integration)
