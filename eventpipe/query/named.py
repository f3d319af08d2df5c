"""Named queries (``sql/queries/*.sql``), bound parameters and result formatting.

A named query starts with a header::

    -- name: top_users
    -- description: ...
    -- param: app_id string
    -- param: limit bigint default 20

and uses ``:name`` placeholders. Values are *bound*, never pasted: each is checked
against its declared type (string, bigint, double, boolean, timestamp, date) and
rendered as one SQL literal (strings quoted with ``'`` doubled; a timestamp is
``TIMESTAMP 'YYYY-MM-DD HH:MM:SS.mmm'`` in UTC), and only placeholders outside string
literals, quoted identifiers and comments are replaced. Every engine receives the
identical bound text.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import orjson
import pyarrow as pa

from eventpipe.query.errors import QueryError


SQL_ROOT = Path(__file__).resolve().parents[2] / "sql"
PARAM_TYPES = ("string", "bigint", "double", "boolean", "timestamp", "date")
FORMATS = ("table", "csv", "json")
ENGINES = ("duckdb", "trino", "athena")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PARAM_LINE = re.compile(r"^--\s*param:\s*(\w+)\s+(\w+)(?:\s+default\s+(.+?))?\s*$")


class QueryRefused(QueryError):
    """The caller may not run this query (wrong app, ad-hoc SQL with a key on Athena...)."""


# ------------------------------------------------------------------ named query files
@dataclass(frozen=True)
class Param:
    name: str
    type: str = "string"
    default: str | None = None


@dataclass(frozen=True)
class NamedQuery:
    name: str
    description: str
    params: tuple[Param, ...]
    sql: str
    path: Path | None = None

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)


def parse_query(text: str, path: Path | None = None) -> NamedQuery:
    """A query file: header comments (name, description, params) and the SQL."""
    name, description, params = (path.stem if path else "adhoc"), "", []
    last = None
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("--"):
            break
        match = _PARAM_LINE.match(stripped)
        if match:
            if match.group(2) not in PARAM_TYPES:
                raise QueryError(f"{path or 'query'}: parameter {match.group(1)}: type {match.group(2)!r} "
                                 f"is not one of {', '.join(PARAM_TYPES)}")
            params.append(Param(match.group(1), match.group(2), match.group(3)))
            last = None
        elif stripped.startswith("-- name:"):
            name, last = stripped.removeprefix("-- name:").strip(), None
        elif stripped.startswith("-- description:"):
            description, last = stripped.removeprefix("-- description:").strip(), "description"
        elif last == "description":
            description += " " + stripped.removeprefix("--").strip()
    return NamedQuery(name, description, tuple(params), text, path)


def list_queries(root: Path = SQL_ROOT) -> list[NamedQuery]:
    return [parse_query(p.read_text(), p) for p in sorted((root / "queries").glob("*.sql"))]


def view_files(root: Path = SQL_ROOT) -> list[Path]:
    return sorted((root / "views").glob("*.sql"))


def resolve_file(file: str, root: Path = SQL_ROOT) -> Path:
    """A path, or the name of a shipped query (``top_users`` / ``top_users.sql``)."""
    candidate = Path(file)
    if candidate.is_file():
        return candidate
    shipped = root / "queries" / (file if file.endswith(".sql") else f"{file}.sql")
    if _NAME.fullmatch(shipped.stem) and shipped.is_file():
        return shipped
    raise QueryError(f"no such file or named query: {file!r} (named queries: "
                     f"{', '.join(q.name for q in list_queries(root))})")


# ------------------------------------------------------------------ binding
def _scan(sql: str):
    """Yield (start, end, name) of each ``:name`` placeholder outside literals and comments."""
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in ("'", '"'):
            j = i + 1
            while True:
                j = sql.find(ch, j)
                if j < 0:
                    raise QueryError(f"unterminated {'string' if ch == chr(39) else 'quoted identifier'} "
                                     f"starting at offset {i}")
                if j + 1 < n and sql[j + 1] == ch:  # a doubled quote
                    j += 2
                    continue
                break
            i = j + 1
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j + 1
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            if j < 0:
                raise QueryError(f"unterminated comment starting at offset {i}")
            i = j + 2
        elif ch == ":" and (i == 0 or sql[i - 1] != ":") and (match := _NAME.match(sql, i + 1)):
            yield i, match.end(), match.group(0)
            i = match.end()
        else:
            i += 1


def placeholders(sql: str) -> list[str]:
    """The distinct placeholder names, in order of appearance."""
    return list(dict.fromkeys(name for _, _, name in _scan(sql)))


def parse_sql_timestamp(text: str) -> datetime:
    """ISO-8601 (a zone or UTC), a date, or epoch milliseconds -> naive UTC datetime."""
    text = text.strip()
    if re.fullmatch(r"-?\d{10,}", text):
        return datetime.fromtimestamp(int(text) / 1000, timezone.utc).replace(tzinfo=None)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise QueryError(f"{text!r} is not a timestamp (ISO-8601, e.g. 2026-01-01T12:00:00Z, "
                         f"or epoch milliseconds)") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment


def literal(value: Any, kind: str = "string") -> str:
    """One SQL literal of the given type (Athena/Trino syntax, also valid after translation to DuckDB)."""
    text = value if isinstance(value, str) else None
    try:
        if kind == "string":
            if not isinstance(value, str):
                raise QueryError("expected a string")
            if "\x00" in value:
                raise QueryError("NUL characters are not allowed")
            return "'" + value.replace("'", "''") + "'"
        if kind == "bigint":
            if isinstance(value, bool) or not (isinstance(value, int) or re.fullmatch(r"[+-]?\d{1,19}", text or "")):
                raise QueryError("expected an integer")
            number = int(value)
            if not -2 ** 63 <= number < 2 ** 63:
                raise QueryError("out of the bigint range")
            return str(number)
        if kind == "double":
            number = float(value)
            if not math.isfinite(number):
                raise QueryError("expected a finite number")
            return repr(number) if "e" in repr(number) else repr(number) + "e0"
        if kind == "boolean":
            if isinstance(value, bool):
                return "TRUE" if value else "FALSE"
            if (text or "").lower() in ("true", "false"):
                return text.upper()
            raise QueryError("expected true or false")
        if kind == "timestamp":
            moment = value if isinstance(value, datetime) else parse_sql_timestamp(text or "")
            if moment.tzinfo is not None:
                moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
            return f"TIMESTAMP '{moment.isoformat(sep=' ', timespec='milliseconds')}'"
        if kind == "date":
            day = value if isinstance(value, date) else date.fromisoformat((text or "").strip())
            return f"DATE '{day.isoformat()}'"
    except (ValueError, TypeError, OverflowError) as exc:
        raise QueryError(f"expected a {kind}: {exc}") from None
    raise QueryError(f"unknown parameter type {kind!r}")


def bind(sql: str, literals: Mapping[str, str]) -> str:
    """Replace each placeholder by its (already rendered) literal."""
    out, pos = [], 0
    for start, end, name in _scan(sql):
        if name not in literals:
            raise QueryError(f"missing parameter :{name} (give --param {name}=...)")
        out += [sql[pos:start], literals[name]]
        pos = end
    return "".join(out) + sql[pos:]


def parse_param(text: str) -> tuple[str, str | None, str]:
    """``name=value`` or ``name:type=value`` -> (name, type or None, value)."""
    key, sep, value = text.partition("=")
    name, _, kind = key.partition(":")
    if not sep or not _NAME.fullmatch(name.strip()):
        raise QueryError(f"parameter {text!r}: write name=value (or name:type=value)")
    if kind and kind not in PARAM_TYPES:
        raise QueryError(f"parameter {name}: type {kind!r} is not one of {', '.join(PARAM_TYPES)}")
    return name.strip(), kind or None, value


def bind_query(query: NamedQuery, values: Mapping[str, Any], types: Mapping[str, str] | None = None) -> str:
    """The query's SQL with every placeholder bound (declared defaults fill the gaps)."""
    types = dict(types or {})
    used = placeholders(query.sql)
    unknown = sorted(set(values) - set(used))
    if unknown:
        raise QueryError(f"unknown parameter(s) {', '.join(unknown)}; this query takes "
                         f"{', '.join(used) or 'none'}")
    literals = {}
    for name in used:
        declared = query.param(name)
        kind = types.get(name) or (declared.type if declared else "string")
        if declared and types.get(name) and types[name] != declared.type:
            raise QueryError(f"parameter {name} is declared {declared.type}, not {types[name]}")
        if name in values:
            value = values[name]
        elif declared is not None and declared.default is not None:
            value = declared.default
        else:
            raise QueryError(f"missing parameter :{name} (give --param {name}=...)")
        try:
            literals[name] = literal(value, kind)
        except QueryError as exc:
            raise QueryError(f"parameter {name}: {exc}") from None
    return bind(query.sql, literals)


# ------------------------------------------------------------------ results
def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (list, dict)):
        return orjson.dumps(value, default=str).decode()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def format_result(table: pa.Table, fmt: str = "table") -> str:
    rows = table.to_pylist()
    names = table.column_names
    if fmt == "json":
        return orjson.dumps(rows, default=str, option=orjson.OPT_INDENT_2).decode()
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(names)
        for row in rows:
            writer.writerow(["" if (v := _cell(row[n])) is None else v for n in names])
        return buffer.getvalue().rstrip("\n")
    if fmt != "table":
        raise QueryError(f"format {fmt!r}: use one of {', '.join(FORMATS)}")
    cells = [[("NULL" if (v := _cell(row[n])) is None else str(v)) for n in names] for row in rows]
    widths = [max([len(n)] + [len(r[i]) for r in cells]) for i, n in enumerate(names)]
    numeric = [pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or pa.types.is_decimal(f.type)
               for f in table.schema]
    line = lambda values: "  ".join(v.rjust(w) if num else v.ljust(w)  # noqa: E731
                                    for v, w, num in zip(values, widths, numeric)).rstrip()
    out = [line(names), "  ".join("-" * w for w in widths)] + [line(r) for r in cells]
    out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(out)
