#!/usr/bin/env bash
# Regenerates dewypb/ from proto/dewy.proto, or into the directory given as
# the first argument (scripts/check-proto.sh uses that to compare).
#
# Needs protoc with the well-known types (Debian: protobuf-compiler and
# libprotobuf-dev) and Go; the two Go plugins are built on first use into
# $DEWY_TEST_CACHE/bin at the versions pinned below.
set -euo pipefail

# protoc-gen-go always matches the google.golang.org/protobuf in go.mod, so
# generated code and runtime agree. protoc-gen-go-grpc is its own module;
# v1.6 code needs grpc >= 1.64 at run time, which go.mod satisfies.
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-$root/dewypb}
DEWY_TEST_CACHE=${DEWY_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dewy-test}
bin=$DEWY_TEST_CACHE/bin

die() {
	printf 'gen-proto: %s\n' "$*" >&2
	exit 1
}

command -v protoc >/dev/null ||
	die "protoc not found; install it with: apt-get install protobuf-compiler libprotobuf-dev"

# Where protoc finds google/protobuf/*.proto: next to the binary's include
# directory for an unpacked release, /usr/include for Debian's packages.
wkt=""
for dir in "$(dirname "$(command -v protoc)")/../include" /usr/include /usr/local/include; do
	if [[ -f $dir/google/protobuf/timestamp.proto ]]; then
		wkt=$dir
		break
	fi
done
[[ -n $wkt ]] || die "google/protobuf/timestamp.proto not found; install it with: apt-get install libprotobuf-dev"

protobuf_version=$(cd "$root" && go list -m -f '{{.Version}}' google.golang.org/protobuf) ||
	die "cannot read the google.golang.org/protobuf version from go.mod"

# ensure_plugin builds $1 from package $2 at version $3 unless the binary
# already in $bin says it is that version.
ensure_plugin() {
	local name=$1 pkg=$2 version=$3 scratch
	if [[ -x $bin/$name ]] &&
		go version -m "$bin/$name" 2>/dev/null | grep -qE "^[[:space:]]+mod[[:space:]].*[[:space:]]${version}([[:space:]]|$)"; then
		return 0
	fi
	mkdir -p "$bin"
	printf 'gen-proto: building %s %s\n' "$name" "$version" >&2
	scratch=$(mktemp -d)
	# A scratch module keeps the plugin's dependencies out of our go.mod.
	(cd "$scratch" && GOWORK=off GOFLAGS=-mod=mod GOBIN="$bin" go install "$pkg@$version") || {
		rm -rf "$scratch"
		die "could not build $name $version"
	}
	rm -rf "$scratch"
}

ensure_plugin protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go "$protobuf_version"
ensure_plugin protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC_VERSION"

mkdir -p "$out"
PATH=$bin:$PATH protoc \
	-I "$root/proto" -I "$wkt" \
	--go_out="$out" --go_opt=paths=source_relative \
	--go-grpc_out="$out" --go-grpc_opt=paths=source_relative \
	"$root/proto/dewy.proto"
