#!/usr/bin/env bash
# Deploys one large artifact with `dewy assets --once` and compares it with
# the shell pipeline that does the same work (fetch, hash, unpack):
#   curl -s URL | tee >(sha256sum) | tar xz
# Both read the artifact over HTTP on loopback from the same server.
# Reports wall time and dewy's peak RSS (GNU time's "Maximum resident set size").
#
# Usage: bench/deploy.sh [SIZE_MIB]    (default 1024)
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
work=$(mktemp -d "${TMPDIR:-/tmp}/dewy-bench.XXXXXX")
srv_pid=""
trap '[ -n "$srv_pid" ] && kill $srv_pid 2>/dev/null; rm -rf "$work"' EXIT

go build -o "$work/dewy" .
go build -o "$work/ghfake" ./bench/ghfake

echo "making a ${size_mib} MiB artifact (incompressible, so gzip does not shrink it)"
mkdir -p "$work/payload" "$work/registry/v1.0.0"
head -c "$((size_mib * 1024 * 1024))" /dev/urandom > "$work/payload/blob.bin"
tar -C "$work/payload" -cf - blob.bin | gzip -1 > "$work/registry/v1.0.0/big_linux_amd64.tar.gz"
(cd "$work/registry/v1.0.0" && sha256sum big_linux_amd64.tar.gz > checksums.txt)
rm -rf "$work/payload"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$work/ghfake" -addr "127.0.0.1:$port" -dir "$work/registry" &
srv_pid=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
url="http://127.0.0.1:$port/download/v1.0.0/big_linux_amd64.tar.gz"

sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
echo "--- baseline: curl | tee >(sha256sum) | tar xz"
mkdir -p "$work/base"
start=$(date +%s.%N)
curl -s "$url" | tee >(sha256sum > "$work/base.sum") | tar -xz -C "$work/base"
base=$(echo "$(date +%s.%N) - $start" | bc)
echo "baseline: ${base}s"

echo "--- dewy assets --once"
start=$(date +%s.%N)
GITHUB_API_URL="http://127.0.0.1:$port" /usr/bin/time -v "$work/dewy" assets --once \
	--registry ghr://bench/big --root "$work/root" --max-unpack-size 8GiB -l warn 2> "$work/time.txt"
dewy=$(echo "$(date +%s.%N) - $start" | bc)
rss=$(awk -F: '/Maximum resident set size/ {gsub(/ /,"",$2); print $2}' "$work/time.txt")
cmp -s "$work/base/blob.bin" "$work/root/current/blob.bin" || { echo "contents differ"; exit 1; }
echo "dewy: ${dewy}s, peak RSS $((rss / 1024)) MiB"
echo "ratio dewy/baseline: $(echo "scale=2; $dewy / $base" | bc)"
