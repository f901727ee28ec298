# shellcheck shell=bash
# Installing, starting and stopping the real backends the tests run against.
# Sourced by scripts/test; expects `set -euo pipefail`.

VERSITYGW_VERSION=v1.8.0
FAKE_GCS_VERSION=v1.56.1
CONSUL_VERSION=v1.22.7
# consul's go.mod replaces its api module with a sibling directory that is not
# part of the published module, so the build requires this published api release.
CONSUL_API_VERSION=v1.34.1

DEWY_TEST_CACHE=${DEWY_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dewy-test}
BIN=$DEWY_TEST_CACHE/bin
STAMPS=$DEWY_TEST_CACHE/stamps
export DEWY_TEST_CACHE

# Tool name to PID (and process group) of its background build.
declare -gA BUILDS=()

say() { printf '%s\n' "$*" >&2; }
die() {
	say "scripts/test: $*"
	exit 1
}

# as_root runs a command as root: directly, through sudo, or not at all.
as_root() {
	if [[ $(id -u) -eq 0 ]]; then
		"$@"
	elif command -v sudo >/dev/null; then
		sudo "$@"
	else
		return 1
	fi
}

# apt_install installs Debian packages, refreshing the package lists first.
apt_install() {
	if ! command -v apt-get >/dev/null || { [[ $(id -u) -ne 0 ]] && ! command -v sudo >/dev/null; }; then
		die "please install these packages (as root): $*"
	fi
	say "--- apt-get install $*"
	as_root apt-get update -q || die "apt-get update failed"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" ||
		die "apt-get install $* failed"
}

# stamp_ok reports whether tool $1 is built at version $2: the stamp written
# after its build matches, and the binary itself still runs and says so.
stamp_ok() {
	local name=$1 want=$2
	local out
	[[ -x $BIN/$name && -f $STAMPS/$name && $(<"$STAMPS/$name") == "$want" ]] || return 1
	# Captured rather than piped into grep -q, whose early exit would fail the
	# pipeline under pipefail.
	case $name in
	consul)
		out=$("$BIN/consul" version 2>/dev/null) || return 1
		[[ $out == "Consul ${want%% *}"* ]]
		;;
	*)
		# The main module's version as recorded by go install.
		out=$(go version -m "$BIN/$name" 2>/dev/null) || return 1
		[[ $'\n'$out$'\n' =~ $'\n'[[:space:]]+mod[[:space:]]+[^[:space:]]+[[:space:]]+"$want"[[:space:]] ]]
		;;
	esac
}

# smtpd_python prints a python3 that can import aiosmtpd: Debian's, which a
# pyenv or virtualenv earlier on PATH may hide.
smtpd_python() {
	local py
	for py in python3 /usr/bin/python3; do
		if command -v "$py" >/dev/null && "$py" -c 'import aiosmtpd' 2>/dev/null; then
			command -v "$py"
			return 0
		fi
	done
	return 1
}

# in_scratch runs a go command with the tool's own go.mod, away from ours.
in_scratch() {
	local dir=$1
	shift
	(cd "$dir" && GOWORK=off GOFLAGS=-mod=mod GOBIN="$BIN" "$@")
}

# build_go_tool installs module path $2 at version $3 as tool $1.
build_go_tool() {
	local name=$1 pkg=$2 version=$3 scratch
	scratch=$(mktemp -d "$DEWY_TEST_CACHE/build.XXXXXX") || return 1
	in_scratch "$scratch" go install "$pkg@$version"
	local rc=$?
	rm -rf "$scratch"
	return "$rc"
}

# build_consul builds consul from its published module. `go install` refuses
# modules with replace directives, so this builds a writable copy with the
# replaces of its own sub-modules dropped.
build_consul() {
	local scratch dir rc=0
	scratch=$(mktemp -d "$DEWY_TEST_CACHE/build.XXXXXX") || return 1
	{
		dir=$(in_scratch "$scratch" go mod download -json "github.com/hashicorp/consul@$CONSUL_VERSION" |
			sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p') &&
			[[ -n $dir ]] &&
			cp -R "$dir" "$scratch/consul" &&
			chmod -R u+w "$scratch/consul" &&
			in_scratch "$scratch/consul" go mod edit \
				-dropreplace=github.com/hashicorp/consul/api \
				-dropreplace=github.com/hashicorp/consul/sdk \
				-dropreplace=github.com/hashicorp/consul/envoyextensions \
				-dropreplace=github.com/hashicorp/consul/proto-public \
				-dropreplace=github.com/hashicorp/consul/troubleshoot \
				-require="github.com/hashicorp/consul/api@$CONSUL_API_VERSION" &&
			in_scratch "$scratch/consul" go build -mod=mod -trimpath -o "$BIN/consul.new" . &&
			mv -f "$BIN/consul.new" "$BIN/consul"
	} || rc=1
	chmod -R u+w "$scratch" 2>/dev/null
	rm -rf "$scratch"
	return "$rc"
}

# ensure_tool builds tool $1 (stamp $2) with command $3... unless it is current,
# retrying once because a cold build fetches hundreds of modules.
ensure_tool() {
	local name=$1 want=$2
	shift 2
	if stamp_ok "$name" "$want"; then
		return 0
	fi
	say "--- building $name $want (log: $DEWY_TEST_CACHE/logs/$name.log)"
	rm -f "$STAMPS/$name"
	if ! "$@" >"$DEWY_TEST_CACHE/logs/$name.log" 2>&1; then
		say "--- building $name failed, retrying once"
		"$@" >>"$DEWY_TEST_CACHE/logs/$name.log" 2>&1 || return 1
	fi
	printf '%s\n' "$want" >"$STAMPS/$name"
	stamp_ok "$name" "$want" || {
		echo "$name built but does not report version $want" >>"$DEWY_TEST_CACHE/logs/$name.log"
		return 1
	}
}

# in_background starts one of this file's functions in a process group of its
# own; $! is then its PID and the group's ID.
in_background() {
	local lib=${BASH_SOURCE[0]}
	if command -v setsid >/dev/null; then
		# shellcheck disable=SC2016 # expanded by the inner shell
		setsid bash -c 'set -euo pipefail; source "$0"; "$@"' "$lib" "$@" </dev/null >&2 &
	else
		"$@" </dev/null >&2 &
	fi
}

backends_install() {
	command -v go >/dev/null || die "go is not on PATH"
	mkdir -p "$BIN" "$STAMPS" "$DEWY_TEST_CACHE/logs"

	# Concurrent runs share the cache; only one of them builds.
	exec 9>"$DEWY_TEST_CACHE/install.lock"
	if command -v flock >/dev/null && ! flock -n 9; then
		say "--- waiting for another scripts/test run to finish building tools"
		flock 9
	fi
	# Scratch dirs of builds that were interrupted; read-only module copies need u+w.
	chmod -R u+w "$DEWY_TEST_CACHE"/build.* 2>/dev/null || true
	rm -rf "$DEWY_TEST_CACHE"/build.*

	# Interrupted mid-build: take the background builds, compilers and all, down too.
	trap 'for pid in "${BUILDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done' EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	BUILDS=()
	in_background ensure_tool versitygw "$VERSITYGW_VERSION" \
		build_go_tool versitygw github.com/versity/versitygw/cmd/versitygw "$VERSITYGW_VERSION"
	BUILDS[versitygw]=$!
	in_background ensure_tool fake-gcs-server "$FAKE_GCS_VERSION" \
		build_go_tool fake-gcs-server github.com/fsouza/fake-gcs-server "$FAKE_GCS_VERSION"
	BUILDS[fake-gcs-server]=$!
	in_background ensure_tool consul "$CONSUL_VERSION api=$CONSUL_API_VERSION" build_consul
	BUILDS[consul]=$!

	# Debian packages meanwhile: redis, and a C compiler for -race.
	local pkgs=()
	command -v redis-server >/dev/null || pkgs+=(redis-server)
	# protoc and the well-known .proto files, to check the generated gRPC code.
	command -v protoc >/dev/null || pkgs+=(protobuf-compiler)
	[[ -f /usr/include/google/protobuf/empty.proto ]] || pkgs+=(libprotobuf-dev)
	# The proxy tests run a plain Node.js application that binds its own port.
	command -v node >/dev/null || pkgs+=(nodejs)
	# Third-party servers that the swap tests run under dewy server: Starlet
	# (Plack, on SERVER_STARTER_PORT) and gunicorn (on LISTEN_FDS).
	command -v plackup >/dev/null || pkgs+=(libplack-perl)
	perl -MPlack::Handler::Starlet -e 1 2>/dev/null || pkgs+=(starlet)
	command -v gunicorn >/dev/null || pkgs+=(gunicorn)
	# The SMTP server the mail notifier is tested against.
	smtpd_python >/dev/null || pkgs+=(python3-aiosmtpd)
	# A real browser for the admin status page test.
	command -v chromium >/dev/null || pkgs+=(chromium)
	if ! command -v "$(go env CC)" >/dev/null; then
		pkgs+=(gcc libc6-dev)
	fi
	# The copy tools people publish file:// releases with.
	command -v rsync >/dev/null || pkgs+=(rsync)
	command -v scp >/dev/null || pkgs+=(openssh-client)
	command -v curl >/dev/null || pkgs+=(curl) # scripts/demo, hooks in the e2e tests
	if ((${#pkgs[@]})); then
		apt_install "${pkgs[@]}"
	fi
	command -v redis-server >/dev/null || die "redis-server is still not on PATH"
	command -v plackup >/dev/null && command -v gunicorn >/dev/null ||
		die "plackup or gunicorn is still not on PATH"
	smtpd_python >/dev/null || die "python3 still cannot import aiosmtpd"

	local name failed=()
	for name in "${!BUILDS[@]}"; do
		wait "${BUILDS[$name]}" || failed+=("$name")
	done
	for name in "${failed[@]}"; do
		say "--- building $name failed; last lines of $DEWY_TEST_CACHE/logs/$name.log:"
		tail -n 30 "$DEWY_TEST_CACHE/logs/$name.log" >&2 || true
	done
	trap - EXIT
	((${#failed[@]} == 0)) || die "could not build: ${failed[*]}"

	flock -u 9 2>/dev/null || true
	exec 9>&-
}

# free_ports prints $1 distinct TCP ports on 127.0.0.1 that nothing is bound to.
free_ports() {
	local n=$1
	if command -v python3 >/dev/null; then
		# Holding every socket until all are chosen keeps the ports distinct.
		python3 -c '
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
' "$n"
		return
	fi
	# No python: probe random high ports below the usual ephemeral range.
	local ports=() p tries=0
	while ((${#ports[@]} < n)); do
		((++tries < 1000)) || return 1
		p=$((20000 + RANDOM % 12000))
		[[ " ${ports[*]} " == *" $p "* ]] && continue
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			ports+=("$p")
		fi
	done
	echo "${ports[*]}"
}

# http_get prints the raw HTTP response to GET $2 on 127.0.0.1:$1.
http_get() {
	# shellcheck disable=SC2016 # expanded by the inner shell
	timeout 3 bash -c '
exec 3<>"/dev/tcp/127.0.0.1/$0" || exit 1
printf "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\n\r\n" "$1" "$0" >&3
cat <&3' "$1" "$2" 2>/dev/null
}

redis_ready() {
	# shellcheck disable=SC2016 # expanded by the inner shell
	timeout 3 bash -c '
exec 3<>"/dev/tcp/127.0.0.1/$0" || exit 1
printf "PING\r\n" >&3
IFS= read -r line <&3 && [[ $line == "+PONG"* ]]' "$1" 2>/dev/null
}
# Any HTTP answer will do: unsigned requests get 403.
versitygw_ready() {
	local r
	r=$(http_get "$1" /) && [[ $r == "HTTP/1."[01]" "* ]]
}
fakegcs_ready() {
	local r
	r=$(http_get "$1" /storage/v1/b) && [[ $r == "HTTP/1."[01]" 200 "* ]]
}
# A dev agent answers HTTP before it has elected itself; tests want a leader,
# so the body must be a non-empty JSON string rather than "".
consul_ready() {
	local r
	r=$(http_get "$1" /v1/status/leader) && [[ $r == "HTTP/1."[01]" 200 "* && $r =~ \"[^\"]+\"[[:space:]]*$ ]]
}

# testdata/smtpd/smtpd.py says "ready" once all three listeners are up (the
# SMTPS one cannot be probed in bash); the plain one must also greet.
smtpd_ready() {
	grep -q '^ready' "$DEWY_TEST_TMP/logs/aiosmtpd.log" 2>/dev/null || return 1
	# shellcheck disable=SC2016 # expanded by the inner shell
	timeout 3 bash -c '
exec 3<>"/dev/tcp/127.0.0.1/$0" || exit 1
IFS= read -r line <&3 && [[ $line == "220"* ]]' "$1" 2>/dev/null
}

# wait_ready polls check $2 on port $3 for backend $1 for up to 60 seconds.
wait_ready() {
	local name=$1 check=$2 port=$3 pid=${4:-} i
	for ((i = 0; i < 300; i++)); do
		if "$check" "$port"; then
			return 0
		fi
		if [[ -n $pid ]] && ! alive "$pid"; then
			break
		fi
		sleep 0.2
	done
	say "--- $name did not become ready on 127.0.0.1:$port; last lines of its log:"
	tail -n 40 "$DEWY_TEST_TMP/logs/$name.log" >&2 || true
	die "$name did not start"
}

# alive reports whether process $1 exists and is not a zombie awaiting reaping.
alive() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[[ ${stat:0:1} != Z ]]
}

BACKEND_PIDS=()
# Leader of the process group started by run_session, if one is running.
SESSIONS=()

# run_session runs a command in a session (and process group) of its own and
# waits for it. The wait returns at once on INT or TERM, and backends_stop then
# takes down the whole group: go test, its test binaries and anything they started.
run_session() {
	if ! command -v setsid >/dev/null; then
		"$@"
		return
	fi
	local pid rc=0
	# Not a group leader, so setsid execs in place and $! leads the new group.
	setsid "$@" </dev/null &
	pid=$!
	SESSIONS+=("$pid")
	wait "$pid" || rc=$?
	SESSIONS=()
	return "$rc"
}

stop_sessions() {
	local pid i
	for pid in "${SESSIONS[@]}"; do
		[[ -n $pid ]] || continue
		kill -TERM -- "-$pid" 2>/dev/null || continue
		for ((i = 0; i < 100; i++)); do
			alive "$pid" || break
			sleep 0.1
		done
		kill -KILL -- "-$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	SESSIONS=()
}

backends_stop() {
	local pid i
	trap - EXIT INT TERM
	stop_sessions
	for pid in "${BACKEND_PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${BACKEND_PIDS[@]}"; do
		for ((i = 0; i < 100; i++)); do
			alive "$pid" || break
			sleep 0.1
		done
		if alive "$pid"; then
			say "--- process $pid ignored SIGTERM, killing it"
			kill -KILL "$pid" 2>/dev/null || true
		fi
		wait "$pid" 2>/dev/null || true
	done
	BACKEND_PIDS=()
	if [[ -n ${DEWY_TEST_TMP:-} ]]; then
		rm -rf "$DEWY_TEST_TMP"
	fi
}

on_exit() {
	local rc=$?
	backends_stop
	exit "$rc"
}

# start runs a backend in the background, logging to $DEWY_TEST_TMP/logs/$1.log.
start() {
	local name=$1
	shift
	"$@" >"$DEWY_TEST_TMP/logs/$name.log" 2>&1 </dev/null &
	BACKEND_PIDS+=("$!")
}

backends_start() {
	DEWY_TEST_TMP=$(mktemp -d "${TMPDIR:-/tmp}/dewy-test.XXXXXX")
	trap on_exit EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	mkdir -p "$DEWY_TEST_TMP/logs" "$DEWY_TEST_TMP/s3" "$DEWY_TEST_TMP/consul" "$DEWY_TEST_TMP/mail"

	local redis_port s3_port gcs_port consul_http consul_serf_lan consul_serf_wan consul_server
	local smtp_plain smtp_starttls smtps
	read -r redis_port s3_port gcs_port consul_http consul_serf_lan consul_serf_wan consul_server \
		smtp_plain smtp_starttls smtps < <(free_ports 10) || die "no free ports"
	[[ -n $smtps ]] || die "no free ports"

	say "--- starting redis-server, versitygw, fake-gcs-server, consul, aiosmtpd in $DEWY_TEST_TMP"
	# In the foreground of its own background job rather than --daemonize: as
	# our child it is reaped the moment it stops, so nothing is left behind.
	start redis-server redis-server --port "$redis_port" --bind 127.0.0.1 --save '' \
		--appendonly no --daemonize no --dir "$DEWY_TEST_TMP"
	local redis_pid=$!

	local s3_access=dewytest s3_secret=dewytestsecret
	start versitygw env ROOT_ACCESS_KEY="$s3_access" ROOT_SECRET_KEY="$s3_secret" \
		"$BIN/versitygw" --port "127.0.0.1:$s3_port" --region us-east-1 posix "$DEWY_TEST_TMP/s3"
	local s3_pid=$!

	start fake-gcs-server "$BIN/fake-gcs-server" -scheme http -host 127.0.0.1 -port "$gcs_port" \
		-backend memory -external-url "http://127.0.0.1:$gcs_port" -log-level warn
	local gcs_pid=$!

	# -1 turns off the DNS and gRPC listeners the tests do not use.
	start consul "$BIN/consul" agent -dev -bind 127.0.0.1 -client 127.0.0.1 \
		-http-port "$consul_http" -https-port -1 -dns-port -1 -grpc-port -1 -grpc-tls-port -1 \
		-serf-lan-port "$consul_serf_lan" -serf-wan-port "$consul_serf_wan" \
		-server-port "$consul_server" -data-dir "$DEWY_TEST_TMP/consul" -log-level warn
	local consul_pid=$!

	local smtpd_dir
	smtpd_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/../testdata/smtpd" && pwd)
	start aiosmtpd "$(smtpd_python)" "$smtpd_dir/smtpd.py" --dir "$DEWY_TEST_TMP/mail" \
		--plain "$smtp_plain" --starttls "$smtp_starttls" --smtps "$smtps" \
		--cert "$smtpd_dir/cert.pem" --key "$smtpd_dir/key.pem"
	local smtpd_pid=$!

	wait_ready redis-server redis_ready "$redis_port" "$redis_pid"
	wait_ready versitygw versitygw_ready "$s3_port" "$s3_pid"
	wait_ready fake-gcs-server fakegcs_ready "$gcs_port" "$gcs_pid"
	wait_ready consul consul_ready "$consul_http" "$consul_pid"
	wait_ready aiosmtpd smtpd_ready "$smtp_plain" "$smtpd_pid"

	export DEWY_TEST_REDIS_ADDR=127.0.0.1:$redis_port
	export DEWY_TEST_REDIS_SERVER
	DEWY_TEST_REDIS_SERVER=$(command -v redis-server)
	export DEWY_TEST_CONSUL_ADDR=127.0.0.1:$consul_http
	export DEWY_TEST_CONSUL_BIN=$BIN/consul
	export DEWY_TEST_S3_ENDPOINT=http://127.0.0.1:$s3_port
	export DEWY_TEST_S3_ACCESS_KEY=$s3_access
	export DEWY_TEST_S3_SECRET_KEY=$s3_secret
	export DEWY_TEST_S3_REGION=us-east-1
	export DEWY_TEST_GCS_ENDPOINT=http://127.0.0.1:$gcs_port
	export DEWY_TEST_SMTP_ADDR=127.0.0.1:$smtp_plain
	export DEWY_TEST_SMTP_STARTTLS_ADDR=127.0.0.1:$smtp_starttls
	export DEWY_TEST_SMTPS_ADDR=127.0.0.1:$smtps
	export DEWY_TEST_SMTP_DIR=$DEWY_TEST_TMP/mail
	export DEWY_TEST_REQUIRE_BACKENDS=1
	say "--- backends ready: redis $DEWY_TEST_REDIS_ADDR, s3 $DEWY_TEST_S3_ENDPOINT," \
		"gcs $DEWY_TEST_GCS_ENDPOINT, consul $DEWY_TEST_CONSUL_ADDR, smtp $DEWY_TEST_SMTP_ADDR (${SECONDS}s)"
}

# backend_skips prints "name: message" for each test in go test -v log $1 that
# was skipped with a message mentioning a backend.
backend_skips() {
	awk '
	# Output lines belong to the test named by the last === marker.
	/^=== (RUN|CONT|NAME|PAUSE) / { cur = $3; next }
	/^[[:space:]]*--- SKIP: / {
		name = $3
		if (tolower(msg[name]) ~ /backend/) print name ":" msg[name]
		next
	}
	# t.Skip logs its message last, so the latest line is the skip message.
	/^[[:space:]]+[^[:space:]-]/ { if (cur != "") msg[cur] = $0 }
	' "$1"
}
