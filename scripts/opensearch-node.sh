#!/usr/bin/env bash
# Run a real single-node OpenSearch 2.19.x on 127.0.0.1 for the search tests.
#   scripts/opensearch-node.sh start|stop|status
# Everything comes from Maven Central through `mvn`: the integ-test zip (server + netty4) plus
# the modules analysis-common, lang-painless, mapper-extras and reindex, assembled into the
# distribution once and cached. Env: OPENSEARCH_PORT (9201), OPENSEARCH_VERSION (first that
# resolves of "2.19.6 2.19.5 2.19.4"), OPENSEARCH_HEAP (512m), OPENSEARCH_MODULES (set it empty
# for the bare zip), EVENTPIPE_CACHE, OPENSEARCH_RUN_DIR (config/data/logs, wiped at each start),
# OPENSEARCH_USER (run user when root: OpenSearch refuses root), OPENSEARCH_JAVA_HOME (Java 11-23).
set -euo pipefail

PORT=${OPENSEARCH_PORT:-9201}
URL="http://127.0.0.1:$PORT"
CACHE=${EVENTPIPE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/eventpipe/opensearch}
RUN=${OPENSEARCH_RUN_DIR:-${TMPDIR:-/tmp}/eventpipe-opensearch-$PORT}
PIDFILE=$RUN/opensearch.pid
MODULES=${OPENSEARCH_MODULES-analysis-common lang-painless mapper-extras reindex}
RUN_USER=${OPENSEARCH_USER:-opensearch}
TIMEOUT=${OPENSEARCH_START_TIMEOUT:-120}

log() { echo "opensearch-node: $*" >&2; }
die() { log "$*"; exit 1; }
as_user() { if [[ $EUID -eq 0 ]]; then runuser -u "$RUN_USER" -- "$@"; else "$@"; fi; }
running() { [[ -s $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }
launcher() { [[ -s $RUN/launcher.pid ]] && kill -0 "$(cat "$RUN/launcher.pid")" 2>/dev/null; }
healthy() { curl -fsS --max-time 5 "$URL/_cluster/health" 2>/dev/null | grep -Eq '"status":"(green|yellow)"'; }

add_module() { # home version module: jars + descriptor (+ policy) under home/modules/<module>
  local home=$1 v=$2 m=$3 art=$3-client cls ext="" dir pom j
  case $m in # maven artifactId, plugin class, extended plugins
    analysis-common) art=$m cls=org.opensearch.analysis.common.CommonAnalysisPlugin ext=lang-painless ;;
    lang-painless) art=$m cls=org.opensearch.painless.PainlessPlugin ;;
    mapper-extras) cls=org.opensearch.index.mapper.MapperExtrasPlugin ;;
    reindex) cls=org.opensearch.index.reindex.ReindexPlugin ;;
    *) die "unknown module $m" ;;
  esac
  [[ " $MODULES " == *" $ext "* ]] || ext=""
  dir=$home/modules/$m pom=$(mktemp -d)
  cat >"$pom/pom.xml" <<EOF
<project><modelVersion>4.0.0</modelVersion><groupId>local</groupId><artifactId>m</artifactId>
<version>0</version><dependencies><dependency><groupId>org.opensearch.plugin</groupId>
<artifactId>$art</artifactId><version>$v</version><exclusions><exclusion>
<groupId>org.opensearch</groupId><artifactId>opensearch</artifactId></exclusion></exclusions>
</dependency></dependencies></project>
EOF
  mvn -q -B -f "$pom/pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
    -DoutputDirectory="$dir" >&2 || { rm -rf "$pom"; return 1; }
  rm -rf "$pom"
  for j in "$dir"/*.jar; do [[ ! -e $home/lib/${j##*/} ]] || rm -f "$j"; done # already on the classpath
  printf '%s\n' "description=$m module (assembled from Maven Central)" "version=$v" "name=$m" \
    "classname=$cls" "java.version=11" "opensearch.version=$v" "custom.foldername=" \
    "extended.plugins=$ext" "has.native.controller=false" >"$dir/plugin-descriptor.properties"
  case $m in # the permissions of the upstream modules' plugin-security.policy
    lang-painless) echo 'grant { permission java.lang.RuntimePermission "createClassLoader";
  permission java.lang.RuntimePermission "getClassLoader"; };' >"$dir/plugin-security.policy" ;;
    reindex) echo 'grant { permission java.net.SocketPermission "*", "connect"; };' >"$dir/plugin-security.policy" ;;
  esac
}

fetch() { # prints the home of an assembled distribution in the cache
  local v home tmp
  for v in ${OPENSEARCH_VERSION:-2.19.6 2.19.5 2.19.4}; do
    home=$CACHE/opensearch-$v
    [[ -f $home/.complete && $(cat "$home/.complete") == "$MODULES" ]] && { echo "$home"; return; }
    log "fetching org.opensearch.distribution.integ-test-zip:opensearch:$v:zip with mvn"
    mkdir -p "$CACHE" && rm -rf "$CACHE"/.unpack.*
    mvn -q -B dependency:copy -Dartifact="org.opensearch.distribution.integ-test-zip:opensearch:$v:zip" \
      -DoutputDirectory="$CACHE" >&2 || { log "could not fetch $v"; continue; }
    tmp=$(mktemp -d "$CACHE/.unpack.XXXXXX")
    if command -v unzip >/dev/null; then unzip -q "$CACHE/opensearch-$v.zip" -d "$tmp"
    else python3 -m zipfile -e "$CACHE/opensearch-$v.zip" "$tmp" && chmod +x "$tmp/opensearch-$v"/bin/*; fi
    for m in $MODULES; do add_module "$tmp/opensearch-$v" "$v" "$m" || die "module $m $v failed"; done
    echo "$MODULES" >"$tmp/opensearch-$v/.complete"
    rm -rf "$home" && mv "$tmp/opensearch-$v" "$home" && rm -rf "$tmp" "$CACHE/opensearch-$v.zip"
    echo "$home"; return
  done
  die "no OpenSearch version could be fetched from Maven Central"
}

find_java() { # Java 11..23: 2.19 needs the security manager, which Java 24 removed
  local jh c
  for c in "${OPENSEARCH_JAVA_HOME:-}" "${JAVA_HOME:-}" "$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")" \
           /usr/lib/jvm/java-21-openjdk-* /usr/lib/jvm/java-17-openjdk-*; do
    [[ -n $c && -x $c/bin/java ]] || continue
    jh=$("$c/bin/java" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
    [[ ${jh%%.*} -ge 11 && ${jh%%.*} -le 23 ]] && { echo "$c"; return; }
  done
  die "no Java 11-23 found; set OPENSEARCH_JAVA_HOME"
}

start() {
  if running; then
    log "already running (pid $(cat "$PIDFILE"))"
  else
    healthy && die "something else already answers on $URL"
    local home java version
    home=$(fetch)
    java=$(find_java)
    version=${home##*/opensearch-}
    if [[ $EUID -eq 0 ]]; then
      id -u "$RUN_USER" >/dev/null 2>&1 || useradd --system --user-group --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin "$RUN_USER"
    fi
    rm -rf "$RUN" && mkdir -p "$RUN"/{config,data,logs,tmp}
    if ! as_user test -r "$home/lib/opensearch-$version.jar"; then # e.g. cache under /root
      cp -al "$home" "$RUN/home" 2>/dev/null || { rm -rf "${RUN:?}/home"; cp -a "$home" "$RUN/home"; }
      home=$RUN/home
    fi
    sed -e "s/^-Xm\([sx]\).*/-Xm\1${OPENSEARCH_HEAP:-512m}/" -e "s|=data$|=$RUN/data|" \
      -e "s|logs/|$RUN/logs/|g" "$home/config/jvm.options" >"$RUN/config/jvm.options"
    cp "$home/config/log4j2.properties" "$RUN/config/"
    printf '%s\n' "cluster.name: eventpipe-test" "node.name: node-1" "discovery.type: single-node" \
      "network.host: 127.0.0.1" "http.port: $PORT" "path.data: $RUN/data" "path.logs: $RUN/logs" \
      "cluster.routing.allocation.disk.threshold_enabled: false" >"$RUN/config/opensearch.yml"
    if [[ -d $home/plugins/opensearch-security ]]; then # not in the integ-test zip
      echo "plugins.security.disabled: true" >>"$RUN/config/opensearch.yml"
    fi
    if [[ $EUID -eq 0 ]]; then chown -R "$RUN_USER:" "$RUN"/{config,data,logs,tmp} && chown "$RUN_USER:" "$RUN"; fi
    log "starting OpenSearch $version from $home (config, data, logs in $RUN)"
    local cmd=(env OPENSEARCH_JAVA_HOME="$java" OPENSEARCH_PATH_CONF="$RUN/config" OPENSEARCH_TMPDIR="$RUN/tmp"
      OPENSEARCH_JAVA_OPTS="${OPENSEARCH_JAVA_OPTS:-}" "$home/bin/opensearch" -p "$PIDFILE")
    if [[ $EUID -eq 0 ]]; then cmd=(runuser -u "$RUN_USER" -- "${cmd[@]}"); fi
    (cd "$RUN" && exec setsid nohup "${cmd[@]}" >"$RUN/console.log" 2>&1 </dev/null) &
    echo $! >"$RUN/launcher.pid"
  fi
  local i
  for ((i = 0; i < TIMEOUT; i++)); do
    healthy && { echo "$URL"; return; }
    launcher || running || break
    sleep 1
  done
  log "OpenSearch did not become healthy on $URL; last log lines:"
  tail -n 40 "$RUN/console.log" >&2 2>/dev/null || true
  stop >/dev/null 2>&1 || true
  exit 1
}

stop() {
  local pid i
  if running; then pid=$(cat "$PIDFILE")
  elif launcher; then pid=$(cat "$RUN/launcher.pid")
  else log "not running"; return 0; fi
  kill "$pid"
  for ((i = 0; i < 30; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; fi
  rm -f "$PIDFILE" "$RUN/launcher.pid"
  log "stopped (pid $pid)"
}

status() {
  if running && healthy; then echo "running pid $(cat "$PIDFILE") $URL"
  elif running; then echo "starting pid $(cat "$PIDFILE") $URL"; return 1
  else echo "stopped"; return 3; fi
}

case ${1:-} in
  start | stop | status) "$1" ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
