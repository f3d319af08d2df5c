"""``eventpipe query``: named and ad-hoc Athena SQL, on Athena or on the local stack.

* On AWS the SQL goes to Athena through awswrangler; on the local stack it
  runs in DuckDB over the same lake (:class:`LocalAthena`), with the views of
  ``sql/views`` created first, or (``engine="trino"``) unmodified on a local
  Trino node, the engine Athena runs (:class:`TrinoAthena`; start one with
  ``scripts/trino-node.sh start``), to check a query before paying for it.
* Named queries (``sql/queries/*.sql``) start with a header::

      -- name: top_users
      -- description: ...
      -- param: app_id string
      -- param: limit bigint default 20

  and use ``:name`` placeholders. Values are *bound*, never pasted: each is
  checked against its declared type (string, bigint, double, boolean,
  timestamp, date) and rendered as one SQL literal (strings quoted with ``'``
  doubled; a timestamp is ``TIMESTAMP 'YYYY-MM-DD HH:MM:SS.mmm'`` in UTC),
  and only placeholders outside string literals, quoted identifiers and
  comments are replaced. Both engines receive the identical bound text.
* An API key (``--key``) makes the query its app's: the ``app_id`` parameter
  is forced to the key's app. Locally the DuckDB session is moreover scoped
  to that app (every table pre-filtered, no file access), so even ad-hoc SQL
  sees nothing else. Athena has no such per-session row filter here, so with
  a key on AWS only the shipped named queries run (each filters on
  ``:app_id``); ad-hoc SQL there needs IAM / Lake Formation, not an API key.
  The Trino engine follows Athena's rule.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import orjson
import pyarrow as pa

from chalicelib.query.local_engine import LocalAthena, QueryError, s3_filesystem

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


def parse_timestamp(text: str) -> datetime:
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
            moment = value if isinstance(value, datetime) else parse_timestamp(text or "")
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


# ------------------------------------------------------------------ the service
@dataclass
class QueryResult:
    table: pa.Table
    sql: str  # the bound SQL that was run (Athena dialect)
    engine: str  # "local" (DuckDB) | "trino" | "athena"
    app_id: str | None = None


@dataclass
class QueryService:
    """Runs queries for the CLI (and anyone else): ``run(...)`` returns a :class:`QueryResult`.

    ``clients`` is a :class:`chalicelib.clients.Clients`; Athena output goes to
    the workgroup's result location unless ``athena_output`` is given.
    """

    clients: Any
    sql_root: Path = SQL_ROOT
    athena_workgroup: str | None = None
    athena_output: str | None = None
    threads: int = 2
    #: The local Trino node (default: $TRINO_URL, else http://127.0.0.1:8081) and the directory it
    #: reads the lake's mirror from (default: ~/.cache/eventpipe/trino-lake/<catalog>); the catalog
    #: (re)created there (default: $EVENTPIPE_TRINO_CATALOG, else "eventpipe").
    trino_url: str | None = None
    trino_root: Path | None = None
    trino_catalog: str | None = None
    _engines: dict = field(default_factory=dict, repr=False)

    @property
    def settings(self):
        return self.clients.settings

    def authenticate(self, api_key: str) -> str:
        from chalicelib.apps import AppStore
        from chalicelib.errors import Unauthorized
        try:
            return AppStore(self.clients.dynamodb, self.settings.apps_table).authenticate(api_key)
        except Unauthorized as exc:
            raise QueryRefused(str(exc)) from None

    # -- local engine
    def local_engine(self, app_id: str | None = None) -> LocalAthena:
        """A DuckDB session over the lake with the views created (scoped to ``app_id`` if given).

        Sessions are cached per app; a session reads the files that existed when it was made
        (Parquet files are listed once), so a long-lived caller should make a new service to see
        newer data.
        """
        if app_id not in self._engines:
            credentials = self.clients.session.get_credentials()
            frozen = credentials.get_frozen_credentials() if credentials else None
            filesystem = s3_filesystem(self.settings.aws_endpoint_url, self.settings.region,
                                       frozen.access_key if frozen else None, frozen.secret_key if frozen else None)
            engine = LocalAthena(self.clients.glue, self.settings.glue_database, filesystem, self.threads,
                                 app_id=app_id)
            engine.create_views(view_files(self.sql_root))
            self._engines[app_id] = engine
        return self._engines[app_id]

    # -- Trino
    def trino_engine(self):
        """A Trino catalog over a mirror of the lake with the views created (cached per service)."""
        if "trino" not in self._engines:
            from chalicelib.query.trino_client import TrinoClient
            from chalicelib.query.trino_engine import TrinoAthena, default_catalog, default_root, default_url
            catalog = self.trino_catalog or default_catalog()
            engine = TrinoAthena(TrinoClient(self.trino_url or default_url()), self.clients.glue, self.clients.s3,
                                 self.settings.glue_database, self.trino_root or default_root(catalog), catalog)
            engine.create_views(view_files(self.sql_root))
            self._engines["trino"] = engine
        return self._engines["trino"]

    # -- Athena
    def _athena(self, sql: str) -> pa.Table:
        import awswrangler as wr
        kwargs = {"database": self.settings.glue_database, "boto3_session": self.clients.session,
                  "workgroup": self.athena_workgroup, "s3_output": self.athena_output}
        if _is_ddl(sql):
            wr.athena.start_query_execution(sql, wait=True, **kwargs)
            return pa.table({"status": ["ok"]})
        frame = wr.athena.read_sql_query(sql, ctas_approach=False, **kwargs)
        return pa.Table.from_pandas(frame, preserve_index=False)

    def create_athena_views(self) -> list[str]:
        """Create (or replace) every view of ``sql/views`` in Athena."""
        names = []
        for path in view_files(self.sql_root):
            self._athena(path.read_text())
            names.append(path.stem)
        return names

    # -- entry point
    def run(self, sql: str | None = None, file: str | None = None, params: Mapping[str, Any] | None = None,
            types: Mapping[str, str] | None = None, api_key: str | None = None, aws: bool = False,
            engine: str | None = None) -> QueryResult:
        """Bind and run a query; ``engine`` is one of :data:`ENGINES` (``aws=True`` means athena)."""
        if (sql is None) == (file is None):
            raise QueryError("give the SQL text or --file, not both")
        engine = engine or ("athena" if aws else "duckdb")
        if engine not in ENGINES or (aws and engine != "athena"):
            raise QueryError(f"engine {engine!r}: use one of {', '.join(ENGINES)} (--aws means athena)")
        aws = engine == "athena"
        athena_rules = engine in ("athena", "trino")  # no per-session row filter: named queries only
        params = dict(params or {})
        shipped = False
        if file is not None:
            path = resolve_file(file, self.sql_root)
            query = parse_query(path.read_text(), path)
            shipped = path.resolve().parent == (self.sql_root / "queries").resolve()
        else:
            query = parse_query(sql)
        app_id = None
        if api_key is not None:
            app_id = self.authenticate(api_key)
            if "app_id" in params and params["app_id"] != app_id:
                raise QueryRefused(f"this key belongs to app {app_id!r}: it cannot query app {params['app_id']!r}")
            if athena_rules and not shipped:
                raise QueryRefused(f"with an API key, {engine.capitalize()} runs only the named queries of "
                                   f"sql/queries (ad-hoc SQL on AWS needs IAM access, not an app key)")
            if "app_id" in placeholders(query.sql):
                params["app_id"] = app_id
            elif athena_rules:
                raise QueryRefused(f"query {query.name} has no :app_id parameter")
        bound = bind_query(query, params, types)
        if aws:
            return QueryResult(self._athena(bound), bound, "athena", app_id)
        if engine == "trino":
            trino = self.trino_engine()
            if _is_ddl(bound):
                return QueryResult(pa.table({"view": [trino.create_view_from_sql(bound)]}), bound, "trino", app_id)
            return QueryResult(trino.query(bound), bound, "trino", app_id)
        duck = self.local_engine(app_id)
        if _is_ddl(bound):
            return QueryResult(pa.table({"view": [duck.create_view_from_sql(bound)]}), bound, "local", app_id)
        return QueryResult(duck.query(bound), bound, "local", app_id)


def _is_ddl(sql: str) -> bool:
    body = re.sub(r"(--[^\n]*\n|/\*.*?\*/|\s)+", " ", sql + "\n", flags=re.S).strip().upper()
    return body.startswith(("CREATE ", "DROP ", "ALTER "))
