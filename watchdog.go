package main

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// dewy's own conversation with its service manager (systemd, through
// NOTIFY_SOCKET; see sd_notify(3)). Without NOTIFY_SOCKET each of these does
// nothing. A notification that cannot be sent is dropped: systemd notices a
// missing READY=1 or WATCHDOG=1 by itself (start timeout, watchdog timeout)
// and says so in its own log, and a deploy must not fail over it.

// sdReady says dewy is up: the first child is healthy, or for assets
// the first deploy (or the finding that nothing needs deploying) is done.
// Send it again after a reload. status, if any, goes along as STATUS=.
func sdReady(status string) {
	msg := "READY=1"
	if status != "" {
		msg += "\nSTATUS=" + statusText(status)
	}
	sdNotify(msg)
}

// sdReloading goes before a restart on SIGHUP. systemd 253 and later
// (Type=notify-reload) want the CLOCK_MONOTONIC time with it, to tell this
// reload from one it asked for earlier; sdReady ends the reload.
func sdReloading() {
	msg := "RELOADING=1"
	if us, ok := monotonicUsec(); ok {
		msg += "\nMONOTONIC_USEC=" + strconv.FormatInt(us, 10)
	}
	sdNotify(msg)
}

// sdReload runs restart between RELOADING=1 and READY=1, for SIGHUP
// and POST /restart alike. READY=1 follows a failed restart too: the
// previous process keeps serving, and systemd would otherwise wait for the
// reload to end until its timeout. status is asked afterwards, so it can
// name the release that serves then.
func sdReload(ctx context.Context, restart func(context.Context) error, status func() string) error {
	sdReloading()
	err := restart(ctx)
	sdReady(status())
	return err
}

// sdStopping says dewy has begun to shut down.
func sdStopping() { sdNotify("STOPPING=1") }

// sdStatus sets the one-line status `systemctl status` shows.
func sdStatus(s string) { sdNotify("STATUS=" + statusText(s)) }

// statusText keeps a status on one line: a newline in it (a tag, an error
// text) would start another assignment, such as READY=1.
func statusText(s string) string { return oneLine(s) }

func monotonicUsec() (int64, bool) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, false
	}
	return ts.Nano() / 1e3, true
}

// startWatchdog pings the service manager's watchdog until ctx ends, when
// systemd asked for it (WatchdogSec= sets WATCHDOG_USEC and WATCHDOG_PID).
// It returns at once; without a watchdog it does nothing.
func startWatchdog(ctx context.Context, getenv func(string) string, log *slog.Logger) {
	if getenv("NOTIFY_SOCKET") == "" {
		return
	}
	every, err := watchdogInterval(getenv, os.Getpid())
	if err != nil {
		log.Warn("systemd watchdog not started", "err", err)
		return
	}
	if every == 0 {
		return
	}
	log.Debug("pinging the systemd watchdog", "every", every)
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		failing := false
		for {
			err := sdNotify("WATCHDOG=1")
			if err != nil && !failing {
				log.Warn("systemd watchdog ping failed", "err", err)
			}
			failing = err != nil
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// watchdogInterval is how often to ping: half of WATCHDOG_USEC, as
// sd_watchdog_enabled(3) recommends, so one late ping is not fatal. It is 0
// when no watchdog is asked of pid: WATCHDOG_USEC unset, or WATCHDOG_PID
// naming another process (the variables were inherited, not meant for us).
func watchdogInterval(getenv func(string) string, pid int) (time.Duration, error) {
	raw := getenv("WATCHDOG_USEC")
	if raw == "" {
		return 0, nil
	}
	if p := getenv("WATCHDOG_PID"); p != "" {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil {
			return 0, fmt.Errorf("WATCHDOG_PID %q: not a pid", p)
		}
		if n != pid {
			return 0, nil
		}
	}
	us, err := strconv.ParseUint(strings.TrimSpace(raw), 10, 63)
	if err != nil || us == 0 {
		return 0, fmt.Errorf("WATCHDOG_USEC %q: want a positive number of microseconds", raw)
	}
	us = min(us, math.MaxInt64/uint64(time.Microsecond)) // no overflow on absurd values
	return time.Duration(us) * time.Microsecond / 2, nil
}
