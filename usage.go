package main

import (
	"strings"
	"unicode/utf8"
)

// usageText is `dewy help`; the URL forms come from the scheme tables.
var usageText = fillUsage(usageTemplate, map[string][]string{
	"{registries}": schemeForms(registrySchemes),
	"{caches}":     schemeForms(cacheSchemes),
	"{notifiers}":  schemeForms(notifierSchemes),
})

// usageWidth is where fillUsage wraps a list: about as wide as the
// longest lines written by hand.
const usageWidth = 104

// fillUsage replaces each placeholder, the last thing on its line, with its
// list, comma-separated and wrapped under the placeholder's column.
func fillUsage(tmpl string, lists map[string][]string) string {
	lines := strings.Split(tmpl, "\n")
	for i, line := range lines {
		for name, items := range lists {
			lead, ok := strings.CutSuffix(line, name)
			if !ok {
				continue
			}
			var b strings.Builder
			b.WriteString(lead)
			indent := utf8.RuneCountInString(lead)
			col := indent
			for j, item := range items {
				if j < len(items)-1 {
					item += ","
				}
				n := utf8.RuneCountInString(item)
				switch {
				case j == 0:
				case col+1+n > usageWidth:
					b.WriteString("\n" + strings.Repeat(" ", indent))
					col = indent
				default:
					b.WriteString(" ")
					col++
				}
				b.WriteString(item)
				col += n
			}
			lines[i] = b.String()
		}
	}
	return strings.Join(lines, "\n")
}

const usageTemplate = `dewy keeps a host on the newest release of an application.

Usage:
  dewy server [flags] -- COMMAND [ARGS...]   run COMMAND and keep it on the newest release
  dewy assets [flags]                        keep static files on the newest release
  dewy -c dewy.toml [flags]                  take everything, the command included, from a file
  dewy history [--root DIR] [-n 20]          print the audit log, newest first
  dewy status [--admin ADDR] [--json]        status of a running dewy (exit 0 healthy, 1 not)
  dewy status --fleet [--admin ADDR]         every host sharing the cache: release, health, last deploy
  dewy rollback [--to TAG] [--admin ADDR]    go back to the previous release (or TAG) and hold there
  dewy pause [--reason TEXT] [--fleet]       hold deploys on this host (or every host); polling goes on
  dewy resume [--fleet]                      deploy again; --fleet also lifts quarantined releases
  dewy pin TAG [--reason TEXT]               deploy TAG, back or forward, and pause there
  dewy version                               print the version
  dewy help                                  print this text

Flags for both commands (flags override DEWY_* variables, which override the file):
  --registry URL            where releases come from (required):
                              {registries}
                            options on every registry: pre-release=true, artifact=NAME, track=v1 | v1.4
                            file:// also takes settle=2s: how long a release must be still
  -s, --slot NAME           deployment slot: only tags whose build metadata is NAME (v1.2.3+NAME)
  --calver FORMAT           tags are calendar versions, e.g. YYYY.0M.0D.MICRO (YYYY YY 0Y MM 0M
                              WW 0W DD 0D MICRO, dot-separated); other tags are ignored
  --cache URL               where dewy keeps state and artifacts (default file://ROOT/.dewy/cache):
                              {caches}
  --notifier URL            where deploy events go (repeatable):
                              {notifiers}
  --root DIR                holds releases/ and current (default: the current directory)
  -i, --interval D          poll interval: 30s, 5m or plain seconds (default 30s; up to 10% jitter)
  --keep N                  releases kept on disk (default 5; current and previous always kept)
  -l, --log-level LEVEL     debug, info, warn or error (default info)
  -f, --log-format FORMAT   text or json (default text)
  --host-id NAME            this host's name in reports (default: hostname)
  --before-deploy-hook CMD  shell command run before a release is swapped in
  --after-deploy-hook CMD   shell command run once the new release is live
  --on-failure-hook CMD     shell command run when a deploy fails
  --hook-timeout D          time a hook may run (default 5m)
  --allow-unverified        deploy releases that publish no digest, with a warning
                            (default: refuse them; --require-checksum is accepted)
  --verify-key KEY          require signatures: minisign:<key or .pub file> | cosign:<cosign.pub>
  --retry-failed            try again releases that failed their health check
  --max-unpack-size SIZE    largest unpacked release (default 4GiB)
  --max-unpack-entries N    most files in one release (default 100000)
  --audit-log FILE          audit log (default ROOT/audit.jsonl)
  --admin ADDR              admin endpoint: status page at /, /status, /fleet, /metrics, POST /deploy,
                            /restart, /rollback, /pause, /resume, /pin (off)
  --admin-public            allow --admin on a non-loopback address
  -c, --config FILE         TOML settings (see dewy.toml.example)

Flags for assets:
  --once                    deploy the newest release if needed, then exit (0 up to date, 1 failed)
                            (waits up to 30s for a release still being copied in)

Flags for server:
  -p, --port LISTEN         8000, 8000-8003, 127.0.0.1:8000, [::1]:8000, unix:/path (repeatable)
  --health-path PATH        HTTP path that answers 2xx when the new process is ready
  --health-timeout D        how long a new release may take to become ready (default 30s)
  --ready-delay D           without a health path or READY=1: how long a new process must stay up (default 1s)
  --drain-timeout D         how long the old process may take to exit (default 30s)
  --stop-signal SIG         signal that asks the application to stop (default SIGTERM)
  --proxy[=http|tcp|off]    give each release a private port (PORT, DEWY_UPSTREAM) and forward
                            the listeners to it only once it passed its gate (off: socket handoff)

Environment: GITHUB_TOKEN or GH_TOKEN, GITHUB_API_URL, SLACK_TOKEN, MAIL_PASSWORD, DEWY_GRPC_TOKEN,
AWS_* and GOOGLE_APPLICATION_CREDENTIALS for buckets, DEWY_<SETTING> for any setting above.
Signals: SIGHUP restarts the application gracefully; SIGUSR1 polls now; SIGTERM/SIGINT stop.
`
