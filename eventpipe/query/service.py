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

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import pyarrow as pa

from eventpipe.query.local_engine import LocalAthena, QueryError, s3_filesystem
from eventpipe.query.named import (  # noqa: F401 - the service's public names, re-exported
    ENGINES, FORMATS, PARAM_TYPES, SQL_ROOT, NamedQuery, Param, QueryRefused, bind, bind_query, format_result,
    list_queries, literal, parse_param, parse_query, parse_sql_timestamp, placeholders, resolve_file, view_files)


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

    ``clients`` is a :class:`chalicelib.runtime.clients.Clients`; Athena output goes to
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
        from chalicelib.apps.keys import AppStore
        from chalicelib.http.errors import Unauthorized
        try:
            return AppStore(self.clients.dynamodb, self.settings.apps_table).authenticate(api_key)
        except Unauthorized as exc:
            raise QueryRefused(str(exc)) from None

    def _credentials(self):
        credentials = self.clients.session.get_credentials()
        return credentials.get_frozen_credentials() if credentials else None

    # -- local engine
    def local_engine(self, app_id: str | None = None) -> LocalAthena:
        """A DuckDB session over the lake with the views created (scoped to ``app_id`` if given).

        Sessions are cached per app; a session reads the files that existed when it was made
        (Parquet files are listed once), so a long-lived caller should make a new service to see
        newer data.
        """
        if app_id not in self._engines:
            frozen = self._credentials()
            filesystem = s3_filesystem(self.settings.aws_endpoint_url, self.settings.region,
                                       frozen.access_key if frozen else None, frozen.secret_key if frozen else None)
            engine = LocalAthena(self.clients.glue, self.settings.glue_database, filesystem, self.threads,
                                 app_id=app_id, s3=self.clients.s3)
            try:
                engine.create_views(view_files(self.sql_root))
            except BaseException:
                engine.close()
                raise
            self._engines[app_id] = engine
        return self._engines[app_id]

    def close(self) -> None:
        """Close every DuckDB session (their connections and temp directories); the service stays usable."""
        for key in [k for k, engine in self._engines.items() if isinstance(engine, LocalAthena)]:
            self._engines.pop(key).close()

    def __enter__(self) -> "QueryService":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- Trino
    def trino_engine(self):
        """A Trino catalog over a mirror of the lake with the views created (cached per service)."""
        if "trino" not in self._engines:
            from eventpipe.query.trino_client import TrinoClient
            from eventpipe.query.trino_engine import (TrinoAthena, default_catalog, default_root, default_url,
                                                      iceberg_catalog_properties)
            catalog = self.trino_catalog or default_catalog()
            frozen = self._credentials()
            iceberg = iceberg_catalog_properties(self.settings.aws_endpoint_url, self.settings.region,
                                                 frozen.access_key if frozen else None,
                                                 frozen.secret_key if frozen else None)
            engine = TrinoAthena(TrinoClient(self.trino_url or default_url()), self.clients.glue, self.clients.s3,
                                 self.settings.glue_database, self.trino_root or default_root(catalog), catalog,
                                 iceberg_properties=iceberg)
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
