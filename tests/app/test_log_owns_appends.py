"""app/log is the one domain that appends events (issue 15): every insert into the `events`
table, by SQLAlchemy or by SQL text, is in app/log, so no event is stored without its leaf."""

from __future__ import annotations

import ast
import re
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app"
OWNER = APP / "log"
_SQL = re.compile(r"\b(INSERT\s+INTO|COPY)\s+\"?events\"?\b", re.IGNORECASE)


def _event_writes(tree: ast.AST) -> list[int]:
    """Lines of `insert(Event)`, `Event(...)` rows, `Event.__table__.insert()` and SQL text
    inserting into events."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            args = [a.id for a in node.args if isinstance(a, ast.Name)]
            if name == "insert" and "Event" in args:
                lines.append(node.lineno)
            if isinstance(func, ast.Name) and func.id == "Event":
                lines.append(node.lineno)
            if (
                name == "insert"
                and "__table__" in ast.unparse(func)
                and "Event" in ast.unparse(func)
            ):
                lines.append(node.lineno)
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and _SQL.search(node.value)
        ):
            lines.append(node.lineno)
    return lines


def _writes_in(paths: list[Path]) -> dict[str, list[int]]:
    found = {}
    for path in paths:
        lines = _event_writes(ast.parse(path.read_text(), str(path)))
        if lines:
            found[str(path.relative_to(APP.parent))] = lines
    return found


def test_only_app_log_inserts_events() -> None:
    outside = [p for p in APP.rglob("*.py") if OWNER not in p.parents]
    assert _writes_in(outside) == {}, "events are appended through app/log's service only"


def test_the_check_sees_each_way_of_inserting() -> None:
    # the detector itself: each form it must catch, and app/log's own insert is found
    samples = {
        "a": "session.execute(insert(Event), rows)",
        "b": "session.add(Event(event_id='x'))",
        "c": "session.execute(text('insert into events (event_id) values (1)'))",
        "d": "cur.copy('COPY events (event_id) FROM STDIN')",
        "e": "session.execute(Event.__table__.insert(), rows)",
    }
    for name, code in samples.items():
        assert _event_writes(ast.parse(code)) == [1], name
    assert _event_writes(ast.parse("session.execute(insert(LogLeaf), rows)")) == []
    assert list(_writes_in(sorted(OWNER.rglob("*.py")))) == ["app/log/repository.py"]
