#!/usr/bin/env bash
# Idle footprint: dewy polling a registry every 10 s with nothing new,
# for DURATION seconds (default 600). Reports RSS (VmRSS, VmHWM) and the
# CPU time dewy used, as a share of one core.
#
# Usage: [TAGS="nos3 nogcs ..."] bench/idle.sh [DURATION_SECONDS] [REGISTRY: file|github]   (defaults: 600 github)
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-600}
kind=${2:-github}
work=$(mktemp -d "${TMPDIR:-/tmp}/dewy-idle.XXXXXX")
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$work"' EXIT

CGO_ENABLED=0 go build -tags "${TAGS:-}" -o "$work/dewy" .
go build -o "$work/ghfake" ./bench/ghfake
mkdir -p "$work/registry/v1.0.0"
echo "site v1" > "$work/registry/v1.0.0/site_linux_amd64"
touch -d '1 minute ago' "$work/registry/v1.0.0/site_linux_amd64"
case $kind in
github)
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	"$work/ghfake" -addr "127.0.0.1:$port" -dir "$work/registry" & pids+=($!)
	for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
	export GITHUB_API_URL="http://127.0.0.1:$port"
	registry=ghr://bench/site
	;;
file) registry="file://$work/registry" ;;
esac
"$work/dewy" assets --registry "$registry" --root "$work/root" -i 10s -l warn & pids+=($!)
pid=${pids[-1]}
sleep 5 # first deploy
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
t0=$(ticks)
sleep "$duration"
t1=$(ticks)
hz=$(getconf CLK_TCK)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
anon=$(awk '/RssAnon/ {print $2}' "/proc/$pid/status")
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
cpu=$(echo "scale=4; ($t1 - $t0) * 100 / $hz / $duration" | bc)
echo "registry $kind, tags [${TAGS:-}], ${duration}s at -i 10s: RSS $((rss / 1024)) MiB (private $((anon / 1024)) MiB, peak $((hwm / 1024)) MiB), CPU $(echo "scale=2; ($t1 - $t0) / $hz" | bc)s = ${cpu}% of one core"
