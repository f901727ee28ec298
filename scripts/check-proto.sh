#!/usr/bin/env bash
# Fails when dewypb/ is not what proto/dewy.proto generates, so a change to
# the .proto file cannot land without its code. Needs what
# scripts/gen-proto.sh needs.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$root/scripts/gen-proto.sh" "$tmp"

# The header names the protoc that ran; Debian releases ship different
# ones whose output is otherwise the same, so that line is not compared.
strip() { grep -vE '^// (	|- )protoc +v' "$1"; }

stale=0
names=$( (cd "$root/dewypb" 2>/dev/null && ls -- *.go; cd "$tmp" && ls -- *.go) | sort -u)
for name in $names; do
	if [[ ! -f $root/dewypb/$name || ! -f $tmp/$name ]]; then
		printf 'check-proto: dewypb/%s is missing or left over\n' "$name" >&2
		stale=1
	elif ! diff -u --label "dewypb/$name" --label "generated/$name" <(strip "$root/dewypb/$name") <(strip "$tmp/$name") >&2; then
		stale=1
	fi
done
if ((stale)); then
	printf 'check-proto: dewypb/ is stale; run "make proto" and include the result\n' >&2
	exit 1
fi
