"""No process of ppg-mi (or of its tests) calls the Admin API that crashes librdkafka (#18 item 13).

``AdminClient.list_consumer_group_offsets`` dies with SIGSEGV when the broker answers
``NOT_COORDINATOR``, as a fresh broker does (docs/reliability.md, "A crash in librdkafka";
reproducer: ``scripts/repro/offset_fetch_segv.py``).  Committed offsets are read with a consumer
that never joins its group instead.  The reproducer is the one caller allowed.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CRASHING_CALLS = {"list_consumer_group_offsets"}


def _calls(source: str) -> list[tuple[int, str]]:
    tree = ast.parse(source)
    return [(node.lineno, node.func.attr) for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in CRASHING_CALLS]


def test_nothing_but_the_reproducer_calls_the_crashing_offset_fetch() -> None:
    sources = [p for folder in ("src", "tests", "training") for p in (REPO / folder).rglob("*.py")]
    assert len(sources) > 50, "the scan found too few sources to mean anything"
    found = [f"{p.relative_to(REPO)}:{line} {name}" for p in sources for line, name in _calls(p.read_text())]
    assert not found, f"calls that crash librdkafka on a fresh broker: {found}"


def test_the_scan_recognises_the_call_the_reproducer_makes() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("repro", REPO / "scripts/repro/offset_fetch_segv.py")
    assert spec is not None and spec.loader is not None
    repro = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(repro)
    assert [name for _, name in _calls(repro.CLIENT)] == ["list_consumer_group_offsets"]
