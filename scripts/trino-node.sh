#!/usr/bin/env bash
# Run a real single-node Trino (the engine behind Athena v3) on 127.0.0.1 for the SQL tests and
# `eventpipe query --engine trino`.
#   scripts/trino-node.sh start|launch|wait|stop|status|java|fetch
# start = launch + wait (prints the URL). `java` prints the Java 24+ home it would use, or why none
# (exit 3). Trino comes from Maven Central through `mvn`: io.trino:trino-server-core (tar.gz), the
# Hive connector io.trino:trino-hive (zip) and the Iceberg connector io.trino:trino-iceberg (zip),
# assembled once into the cache (~1 GB unpacked); a cache assembled before a connector was added
# gets only that connector fetched.
# No catalog is configured: catalogs are created at run time (`CREATE CATALOG`, dynamic catalog
# management), see eventpipe/query/trino_engine.py.
# Env: TRINO_PORT (8081), TRINO_VERSION (476), TRINO_HEAP (2G), TRINO_JAVA_HOME (Java 24+),
# EVENTPIPE_CACHE, TRINO_RUN_DIR (etc, data, logs; wiped at each start), TRINO_START_TIMEOUT (120 s).
set -euo pipefail

PORT=${TRINO_PORT:-8081}
URL="http://127.0.0.1:$PORT"
VERSION=${TRINO_VERSION:-476}
CACHE=${EVENTPIPE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/eventpipe}/trino
RUN=${TRINO_RUN_DIR:-${TMPDIR:-/tmp}/eventpipe-trino-$PORT}
PIDFILE=$RUN/data/var/run/launcher.pid
TIMEOUT=${TRINO_START_TIMEOUT:-120}
#: The connectors installed beside the server: Hive (the rollup tables) and Iceberg (the raw events).
PLUGINS="hive iceberg"

log() { echo "trino-node: $*" >&2; }
die() { log "$*"; exit 1; }
running() { [[ -s $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }
info() { curl -fsS --max-time 5 "$URL/v1/info" 2>/dev/null; }
healthy() { info | grep -q '"starting":false'; }

java_version() { # home -> major version, or nothing
  "$1/bin/java" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p'
}

find_java() { # Java 24+ (Trino 476 needs it); prints the home, or why there is none (exit 3)
  local c v seen=""
  for c in "${TRINO_JAVA_HOME:-}" "${JAVA_HOME:-}" /usr/lib/jvm/temurin-*-jdk-* /usr/lib/jvm/java-*-openjdk-* \
           "$(dirname "$(dirname "$(readlink -f "$(command -v java 2>/dev/null || echo /nonexistent)")")")"; do
    [[ -n $c && -x $c/bin/java ]] || continue
    v=$(java_version "$c")
    [[ ${v%%.*} =~ ^[0-9]+$ && ${v%%.*} -ge 24 ]] && { echo "$c"; return 0; }
    seen+=" $c (Java ${v:-?})"
  done
  echo "no Java 24+ found (Trino $VERSION needs it; set TRINO_JAVA_HOME). Seen:${seen:- none}"
  return 3
}

mvn_copy() { # artifact dest-dir: one artifact from Maven Central into dest-dir
  if ! mvn -q -B dependency:copy -Dartifact="$1" -DoutputDirectory="$2" -Dmaven.repo.local="$CACHE/.m2" >&2; then
    rm -rf "$2"
    die "DOWNLOAD FAILED: could not fetch $1 from Maven Central (see mvn's output above)"
  fi
}

unpack_plugin() { # name zip server-home: the connector zip unpacked as <server-home>/plugin/<name>
  local tmp
  tmp=$(mktemp -d "$CACHE/.unpack.XXXXXX")
  if command -v unzip >/dev/null; then unzip -q "$2" -d "$tmp"
  else python3 -m zipfile -e "$2" "$tmp"; fi
  rm -rf "$3/plugin/$1" && mv "$tmp/trino-$1-$VERSION" "$3/plugin/$1"
  rm -rf "$tmp"
}

fetch() { # prints the home of the assembled server in the cache (plugins missing from it are added)
  local home=$CACHE/trino-server-$VERSION tmp plugin missing=()
  if [[ -f $home/.complete ]]; then
    for plugin in $PLUGINS; do [[ -d $home/plugin/$plugin ]] || missing+=("$plugin"); done
    [[ ${#missing[@]} -eq 0 ]] && { echo "$home"; return; }
  fi
  command -v mvn >/dev/null || die "mvn is not installed: cannot fetch Trino from Maven Central"
  mkdir -p "$CACHE" && rm -rf "$CACHE"/.unpack.* "$CACHE"/.download
  # Maven's own plugins are cached in $CACHE/.m2; the Trino artifacts are removed once unpacked.
  if [[ -f $home/.complete ]]; then # an existing server: add the connectors it lacks
    for plugin in "${missing[@]}"; do
      log "adding io.trino:trino-$plugin:$VERSION:zip to $home with mvn"
      mvn_copy "io.trino:trino-$plugin:$VERSION:zip" "$CACHE/.download"
      unpack_plugin "$plugin" "$CACHE/.download/trino-$plugin-$VERSION.zip" "$home"
    done
  else
    log "fetching io.trino:trino-server-core:$VERSION:tar.gz and the connectors ($PLUGINS; ~780 MB) with mvn"
    mvn_copy "io.trino:trino-server-core:$VERSION:tar.gz" "$CACHE/.download"
    for plugin in $PLUGINS; do mvn_copy "io.trino:trino-$plugin:$VERSION:zip" "$CACHE/.download"; done
    tmp=$(mktemp -d "$CACHE/.unpack.XXXXXX")
    tar -xzf "$CACHE/.download/trino-server-core-$VERSION.tar.gz" -C "$tmp"
    for plugin in $PLUGINS; do
      unpack_plugin "$plugin" "$CACHE/.download/trino-$plugin-$VERSION.zip" "$tmp/trino-server-core-$VERSION"
    done
    chmod +x "$tmp/trino-server-core-$VERSION"/bin/launcher "$tmp/trino-server-core-$VERSION"/bin/*/launcher
    echo "$VERSION" >"$tmp/trino-server-core-$VERSION/.complete"
    rm -rf "$home" && mv "$tmp/trino-server-core-$VERSION" "$home"
    rm -rf "$tmp"
  fi
  rm -rf "$CACHE/.download" "$CACHE/.m2/io/trino"
  echo "$home"
}

launch() {
  if running; then log "already running (pid $(cat "$PIDFILE"))"; return 0; fi
  info >/dev/null && die "something else already answers on $URL"
  local home java
  java=$(find_java) || die "$java"
  home=$(fetch)
  rm -rf "$RUN" && mkdir -p "$RUN"/{etc/catalog,data}
  printf '%s\n' "node.environment=eventpipe" "node.id=eventpipe-$PORT" "node.bind-ip=127.0.0.1" \
    "node.data-dir=$RUN/data" \
    >"$RUN/etc/node.properties"
  # UTC everywhere: Athena's session time zone; the file metastore and Parquet read with it.
  printf '%s\n' "-server" "-Xmx${TRINO_HEAP:-2G}" "-XX:+UseSerialGC" "-XX:TieredStopAtLevel=1" \
    "-XX:+ExitOnOutOfMemoryError" "-Djdk.attach.allowAttachSelf=true" "-Duser.timezone=UTC" \
    "-Djava.io.tmpdir=$RUN/data/tmp" >"$RUN/etc/jvm.config"
  mkdir -p "$RUN/data/tmp"
  printf '%s\n' "coordinator=true" "node-scheduler.include-coordinator=true" "http-server.http.port=$PORT" \
    "http-server.log.enabled=false" "discovery.uri=$URL" "catalog.management=dynamic" "catalog.store=memory" \
    "query.max-memory=1GB" "query.max-memory-per-node=1GB" "task.concurrency=2" \
    "query.min-expire-age=5m" "node.internal-address=127.0.0.1" >"$RUN/etc/config.properties"
  echo "io.trino=WARN" >"$RUN/etc/log.properties"
  log "starting Trino $VERSION from $home with $java (etc, data, logs in $RUN)"
  JAVA_HOME=$java PATH="$java/bin:$PATH" "$home/bin/launcher" --etc-dir="$RUN/etc" --data-dir="$RUN/data" \
    --pid-file="$PIDFILE" --launcher-log-file="$RUN/launcher.log" --server-log-file="$RUN/server.log" start >&2
}

wait_healthy() {
  local i
  for ((i = 0; i < TIMEOUT; i++)); do
    healthy && { echo "$URL"; return 0; }
    running || [[ $i -lt 5 ]] || break
    sleep 1
  done
  log "Trino did not become ready on $URL; last log lines:"
  tail -n 40 "$RUN/launcher.log" "$RUN/server.log" >&2 2>/dev/null || true
  stop >/dev/null 2>&1 || true
  exit 1
}

stop() {
  local pid i
  if ! running; then log "not running"; return 0; fi
  pid=$(cat "$PIDFILE")
  kill "$pid"
  for ((i = 0; i < 30; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; fi
  rm -f "$PIDFILE"
  log "stopped (pid $pid)"
}

status() {
  if running && healthy; then echo "running pid $(cat "$PIDFILE") $URL"
  elif running; then echo "starting pid $(cat "$PIDFILE") $URL"; return 1
  else echo "stopped"; return 3; fi
}

case ${1:-} in
  fetch) fetch ;;
  start) launch && wait_healthy ;;
  launch) launch ;;
  wait) wait_healthy ;;
  stop | status) "$1" ;;
  java) find_java ;;
  *) echo "usage: $0 start|launch|wait|stop|status|java|fetch" >&2; exit 2 ;;
esac
