"""The reliability suite: load, lost callbacks, injected faults and a bad-input corpus, each module on
a local stack of its own (``python -m pixverse_local`` with the module's settings), over loopback.

``RELIABILITY_SCALE=full`` (``make reliability``) runs the full sizes; the default ``small`` is what
``make test`` runs. The figures are printed at the end of the session and written as JSON (see
``reliability_support.ResultsBook.write``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from reliability_support import ResultsBook, Scale, current_scale

_BOOK = pytest.StashKey[ResultsBook]()
_DIR = "tests/reliability/"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _DIR in item.nodeid.replace("\\", "/"):
            item.add_marker(pytest.mark.reliability)


@pytest.fixture(scope="session")
def scale() -> Scale:
    return current_scale()


@pytest.fixture(scope="session")
def results(pytestconfig: pytest.Config, scale: Scale) -> ResultsBook:
    """The session's figures; printed and written when the session ends."""
    book = pytestconfig.stash.get(_BOOK, None)
    if book is None:
        book = ResultsBook(scale)
        pytestconfig.stash[_BOOK] = book
    return book


@pytest.fixture(scope="module")
def stack_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("reliability-stack")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    book = config.stash.get(_BOOK, None)
    if book is None or not book.scenarios:
        return
    path = book.write(Path(str(config.rootpath)) / ".pytest_cache")
    document = book.document()
    terminalreporter.section(f"reliability figures ({book.scale.name})")
    totals = document["totals"]
    terminalreporter.write_line(
        f"jobs {totals['jobs']}, duplicate callbacks {totals['duplicate_callbacks']}, "
        f"jobs lost {totals['jobs_lost']}, duplicate events {totals['duplicate_events']}, "
        f"wall {document['wall_seconds']} s"
    )
    terminalreporter.write_line(f"faults injected: {totals['faults_injected']}")
    for name, figures in document["scenarios"].items():
        shown = {k: v for k, v in figures.items() if not isinstance(v, list | dict) or len(str(v)) < 200}
        terminalreporter.write_line(f"  {name}: {shown}")
    terminalreporter.write_line(f"command: {document['command']}")
    terminalreporter.write_line(f"written to {path}")
