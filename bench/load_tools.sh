#!/usr/bin/env bash
# Installs the native load tools bench/serve.py drives, so that the clients' cost stays small
# next to the server's: wrk (Debian package) for REST, ghz (Go module) for gRPC. Idempotent:
# a second run installs nothing. ghz goes to bench/.tools/bin (ignored by git), wrk to the system.
set -euo pipefail

GHZ_VERSION="${GHZ_VERSION:-v0.120.0}"
TOOLS_BIN="$(cd "$(dirname "$0")" && pwd)/.tools/bin"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"

if ! command -v wrk >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq wrk >/dev/null 2>&1 \
        || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; } \
        || { echo "load_tools.sh: could not install wrk with apt-get (needs root and Debian's packages)" >&2; exit 1; }
fi

if [ "$("$TOOLS_BIN/ghz" --version 2>&1)" != "$GHZ_VERSION" ]; then
    [ -x "$GO" ] || { echo "load_tools.sh: Go not found (set GO=/path/to/go) to install ghz" >&2; exit 1; }
    mkdir -p "$TOOLS_BIN"
    # ghz prints its version from a variable its releases set at link time; set it the same way.
    if ! log="$(GOBIN="$TOOLS_BIN" GOFLAGS=-buildvcs=false "$GO" install \
            -ldflags "-s -w -X main.version=$GHZ_VERSION" "github.com/bojand/ghz/cmd/ghz@$GHZ_VERSION" 2>&1)"; then
        echo "$log" >&2
        echo "load_tools.sh: could not install ghz $GHZ_VERSION (set GHZ_VERSION to another release)" >&2
        exit 1
    fi
fi

echo "wrk $(wrk -v 2>&1 | head -1 | cut -d" " -f2), ghz $("$TOOLS_BIN/ghz" --version 2>&1)"
