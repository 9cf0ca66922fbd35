#!/usr/bin/env bash
# Builds or fetches the peer servers of tests/peers/ into a cache outside the work tree, reusing what is there:
#   * Jaeger v2 (all-in-one), built with Go from its module github.com/jaegertracing/jaeger at $JAEGER_VERSION;
#   * the Zipkin server's executable jar, io.zipkin:zipkin-server:$ZIPKIN_VERSION:jar:exec, fetched with Maven.
# The versions live in tests/peers/versions.env. The cache is $VEIL_PEERS_CACHE (default ~/.cache/veil-peers).
#
# A Jaeger built from its Go module serves a placeholder page instead of the UI (the UI is a separate JavaScript
# project). To embed a UI you have built (jaeger-ui's packages/jaeger-ui/build), set VEIL_JAEGER_UI_BUILD to
# that folder: the binary then goes to jaeger-$JAEGER_VERSION-ui/ instead.
#
# Exits non-zero, saying which registry or checksum database did not answer, when a peer could not be had.
# Usage: bash tests/peers/build.sh [jaeger] [zipkin]   (default both; also: nox -s peers; run by .ci/run through
#        .ci/peers.d/)
set -uo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=versions.env
. "$here/versions.env"
cache="${VEIL_PEERS_CACHE:-$HOME/.cache/veil-peers}"
mkdir -p "$cache"

failed=0
say() { echo "peers: $*"; }
fail() {
    echo "peers: ERROR: $*" >&2
    failed=1
}
seconds_since() { echo $(($(date +%s) - $1)); }
# A jar is a zip: its central directory must read (python3 rather than unzip, which a machine may lack).
valid_jar() { [ -s "$1" ] && python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).getinfo("META-INF/MANIFEST.MF")' "$1" 2>/dev/null; }

# One build at a time per cache (nox and .ci/run may run together).
if command -v flock >/dev/null; then
    exec 9>"$cache/.lock"
    flock 9
fi

build_jaeger() {
    local ui="${VEIL_JAEGER_UI_BUILD:-}"
    local folder="$cache/jaeger-$JAEGER_VERSION"
    [ -n "$ui" ] && folder="$folder-ui"
    local binary="$folder/jaeger"
    if [ -x "$binary" ] && "$binary" version 2>/dev/null | grep -q "\"gitVersion\":\"$JAEGER_VERSION\""; then
        say "Jaeger $JAEGER_VERSION: cached at $binary"
        return 0
    fi
    if ! command -v go >/dev/null; then
        fail "Jaeger: no Go toolchain on PATH (https://go.dev/doc/install); cannot build $JAEGER_VERSION"
        return 1
    fi
    if [ -n "$ui" ] && [ ! -f "$ui/index.html" ]; then
        fail "Jaeger: VEIL_JAEGER_UI_BUILD=$ui has no index.html (give jaeger-ui's packages/jaeger-ui/build)"
        return 1
    fi
    local started
    started=$(date +%s)
    local module="github.com/jaegertracing/jaeger@$JAEGER_VERSION"
    say "Jaeger $JAEGER_VERSION: downloading the module $module"
    local listing
    listing="$(go mod download -json "$module" 2>&1)"
    local source
    source="$(printf '%s' "$listing" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' | head -n 1)"
    if [ -z "$source" ] || [ ! -d "$source" ]; then
        local sumdb proxy
        sumdb="$(go env GOSUMDB)"
        proxy="$(go env GOPROXY)"
        if printf '%s' "$listing" | grep -qiE "verifying|checksum|${sumdb%% *}"; then
            fail "Jaeger: the Go checksum database (GOSUMDB=$sumdb) did not answer or refused $module:"
        else
            fail "Jaeger: the Go module proxy (GOPROXY=$proxy) did not answer or refused $module:"
        fi
        printf '%s\n' "$listing" | grep -i '"Error"\|error\|dial\|timeout' | head -n 5 >&2
        return 1
    fi
    # The module cache is read-only, and the module's go.mod has replace directives (so `go install m@v`
    # refuses it): build inside a writable copy.
    local work
    work="$(mktemp -d "${TMPDIR:-/tmp}/veil-jaeger-build.XXXXXX")"
    cp -r "$source/." "$work/"
    chmod -R u+w "$work"
    if [ -n "$ui" ]; then
        rm -rf "$work/cmd/query/app/ui/actual"
        mkdir -p "$work/cmd/query/app/ui/actual"
        cp -r "$ui/." "$work/cmd/query/app/ui/actual/"
        find "$work/cmd/query/app/ui/actual" -type f ! -name '*.gz' -exec gzip --no-name {} +
    fi
    say "Jaeger $JAEGER_VERSION: building ./cmd/jaeger (the first build takes minutes; later ones use Go's caches)"
    mkdir -p "$folder"
    local output
    if ! output="$(cd "$work" && go build -trimpath \
        -ldflags "-X github.com/jaegertracing/jaeger/internal/version.latestVersion=$JAEGER_VERSION" \
        -o "$binary.partial" ./cmd/jaeger 2>&1)"; then
        local sumdb proxy
        sumdb="$(go env GOSUMDB)"
        proxy="$(go env GOPROXY)"
        if printf '%s' "$output" | grep -qiE "verifying|${sumdb%% *}"; then
            fail "Jaeger: the Go checksum database (GOSUMDB=$sumdb) did not answer while building:"
        elif printf '%s' "$output" | grep -qiE "dial tcp|timeout|no such host|connection refused|410 Gone|404 Not Found"; then
            fail "Jaeger: the Go module proxy (GOPROXY=$proxy) did not answer while building:"
        else
            fail "Jaeger: go build failed:"
        fi
        printf '%s\n' "$output" | tail -n 8 >&2
        rm -rf "$work" "$binary.partial"
        return 1
    fi
    rm -rf "$work"
    mv "$binary.partial" "$binary"
    say "Jaeger $JAEGER_VERSION: built $binary in $(seconds_since "$started") s"
}

fetch_zipkin() {
    local folder="$cache/zipkin-$ZIPKIN_VERSION"
    local jar="$folder/zipkin-server-$ZIPKIN_VERSION-exec.jar"
    if valid_jar "$jar"; then
        say "Zipkin $ZIPKIN_VERSION: cached at $jar"
        return 0
    fi
    if ! command -v java >/dev/null; then
        fail "Zipkin: no Java on PATH (Zipkin 3 needs Java 17 or newer)"
        return 1
    fi
    if ! command -v mvn >/dev/null; then
        fail "Zipkin: no Maven (mvn) on PATH; it fetches io.zipkin:zipkin-server from Maven Central"
        return 1
    fi
    local started
    started=$(date +%s)
    local artifact="io.zipkin:zipkin-server:$ZIPKIN_VERSION:jar:exec"
    say "Zipkin $ZIPKIN_VERSION: fetching $artifact with Maven"
    mkdir -p "$folder"
    local output
    # -C: a checksum mismatch is an error, not a warning.
    if ! output="$(cd "$folder" && mvn -B -C -ntp org.apache.maven.plugins:maven-dependency-plugin:2.8:copy -Dartifact="$artifact" \
        -DoutputDirectory="$folder" 2>&1)"; then
        if printf '%s' "$output" | grep -qi "checksum"; then
            fail "Zipkin: Maven Central served $artifact with a wrong checksum:"
        elif printf '%s' "$output" | grep -qiE "could not transfer|unknown host|connect|timed out|resolve"; then
            fail "Zipkin: Maven Central (the central repository in Maven's settings) did not answer for $artifact:"
        else
            fail "Zipkin: Maven could not fetch $artifact:"
        fi
        printf '%s\n' "$output" | grep -m 1 -E "^\[ERROR\] [^ ]" >&2 || printf '%s\n' "$output" | tail -n 5 >&2
        return 1
    fi
    if ! valid_jar "$jar"; then
        fail "Zipkin: $jar is not a valid jar"
        return 1
    fi
    say "Zipkin $ZIPKIN_VERSION: fetched $jar in $(seconds_since "$started") s"
}

wanted="${*:-jaeger zipkin}"
for peer in $wanted; do
    case "$peer" in
    jaeger) build_jaeger ;;
    zipkin) fetch_zipkin ;;
    *) fail "unknown peer '$peer' (jaeger or zipkin)" ;;
    esac
done
if [ "$failed" -ne 0 ]; then
    echo "peers: some peers are missing; the tests in tests/peers/ skip without them (and fail under VEIL_REQUIRE_PEERS)" >&2
    exit 1
fi
say "ready in $cache"
