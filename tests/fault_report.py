"""Bookkeeping for the fault-injection tests (tests/test_faults.py).

Each fault test takes the ``fault`` fixture: the fault counts as *tried* as
soon as the fixture is set up, and as *handled* only if the test both reached
its end (``fault.handled(...)``, called after its assertions) and passed in
pytest's own verdict (setup, call and teardown). A test that fails anywhere,
before or after it recorded, counts as tried but not handled. ``outputs lost``
adds up what the tests measured themselves (``fault.lost(n)`` or
``fault.kept(snapshot)``): earlier outputs that a fault destroyed, changed, or
left unreadable under their final names.

The summary line (``faults: N tried, N handled, 0 outputs lost``) is printed
by the ``pytest_terminal_summary`` hook in conftest.py; with ``-v`` there is
also one line per fault.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest

_FAULTS: dict[str, "Fault"] = {}


@dataclass
class Fault:
    nodeid: str
    name: str
    reached_end: bool = False
    failed: bool = False
    passed_call: bool = False
    skipped: bool = False
    outputs_lost: int = 0
    outcome: str = ""

    def describe(self, name: str) -> "Fault":
        """A human name for the fault (default: the test's name)."""
        self.name = name
        return self

    def lost(self, n: int) -> int:
        """Record ``n`` outputs lost (call before asserting it is 0); returns ``n``."""
        self.outputs_lost += int(n)
        return int(n)

    def kept(self, snap: dict[Path, str | None]) -> int:
        """Compare files against ``snapshot(...)``; records and returns how many changed or vanished."""
        return self.lost(sum(1 for p, digest in snap.items() if _digest(p) != digest))

    def handled(self, outcome: str = "") -> None:
        """Call at the very end of the test, after every assertion passed."""
        self.reached_end = True
        self.outcome = outcome

    @property
    def is_handled(self) -> bool:
        return self.reached_end and self.passed_call and not self.failed


def _digest(path) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def snapshot(*paths) -> dict[Path, str | None]:
    """Content digests of files (every file under a folder), to check later with ``fault.kept``."""
    out = {}
    for p in map(Path, paths):
        files = [f for f in p.rglob("*") if f.is_file()] if p.is_dir() else [p]
        out.update({f: _digest(f) for f in files})
    return out


@pytest.fixture
def fault(request) -> Fault:
    f = Fault(request.node.nodeid, request.node.name)
    _FAULTS[request.node.nodeid] = f
    return f


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    f = _FAULTS.get(item.nodeid)
    if f is None:
        return
    if rep.skipped:
        f.skipped = True
    elif rep.failed:
        f.failed = True
    elif rep.when == "call" and rep.passed:
        f.passed_call = True


def results() -> list[Fault]:
    return list(_FAULTS.values())


def summary_line(faults: list[Fault]) -> str:
    tried = [f for f in faults if not f.skipped]
    handled = sum(f.is_handled for f in tried)
    lost = sum(f.outputs_lost for f in tried)
    skipped = len(faults) - len(tried)
    line = f"faults: {len(tried)} tried, {handled} handled, {lost} outputs lost"
    return line + (f" ({skipped} skipped)" if skipped else "")


def terminal_summary(terminalreporter, config) -> None:
    faults = results()
    if not faults:
        return
    tr = terminalreporter
    if config.get_verbosity() > 0:
        tr.section("fault injection")
        for f in faults:
            state = ("skipped" if f.skipped else "handled" if f.is_handled else "NOT HANDLED")
            lost = f", {f.outputs_lost} output(s) lost" if f.outputs_lost else ""
            outcome = f": {f.outcome}" if f.outcome and not f.skipped else ""
            tr.write_line(f"{state:<11} {f.name}{outcome}{lost}")
    tr.write_line(summary_line(faults))
