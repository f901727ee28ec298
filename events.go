package main

import (
	"context"
	"time"
)

// Event kinds, as they appear in notifications and the audit log.
const (
	eventStarted    = "started"     // a deploy began
	eventDeployed   = "deployed"    // the new release is live
	eventRolledBack = "rolled_back" // the new release failed to start; the previous one serves
	eventFailed     = "failed"      // the deploy failed before anything was swapped
	eventRestarted  = "restarted"   // the application was restarted by signal or request
	eventStopped    = "stopped"     // dewy stopped
	eventDown       = "down"        // nothing serves: no release is running, and the sockets refuse connections
	eventUp         = "up"          // a release serves again after eventDown
	eventRollback   = "rollback"    // an operator rolled back
	eventPinned     = "pinned"      // an operator pinned a release: deployed it and paused
	eventPaused     = "paused"      // an operator paused deploys (Error holds the reason)
	eventResumed    = "resumed"     // an operator resumed deploys
	eventHeldBack   = "held_back"   // a deploy that had started was stopped by a pause or quarantine before it touched the live service
)

// Deploy outcomes, as in deployEvent.Outcome and the metrics' outcome label.
const (
	outcomeOK         = "ok"
	outcomeFailed     = "failed"
	outcomeRolledBack = "rolled_back"
)

// deployEvent is one thing operators want to know about: who deployed what,
// where, when, and how it went. It never carries a secret.
type deployEvent struct {
	Kind        string        `json:"event"`
	Time        time.Time     `json:"time"`
	Command     string        `json:"command"` // server or assets
	App         string        `json:"app"`
	Host        string        `json:"host"`
	User        string        `json:"user"`
	Slot        string        `json:"slot,omitempty"` // --slot, when set
	Version     string        `json:"version,omitempty"`
	Previous    string        `json:"previous,omitempty"`
	ArtifactURL string        `json:"artifact_url,omitempty"`
	SHA256      string        `json:"sha256,omitempty"`
	VerifiedBy  string        `json:"verified_by,omitempty"` // signature, checksums file, registry digest…
	Duration    time.Duration `json:"duration_ns,omitempty"`
	Outcome     string        `json:"outcome,omitempty"` // ok, failed, rolled_back
	Error       string        `json:"error,omitempty"`
	Hooks       []hookResult  `json:"hooks,omitempty"`
	By          string        `json:"by,omitempty"`    // who asked, for operator actions: uid on the unix socket, else the address
	Fleet       bool          `json:"fleet,omitempty"` // the action applies to every host sharing the cache

	releaseID string // the registry's ID of the release, for its deploy report
}

// hookResult is what one hook run did; Output is truncated.
type hookResult struct {
	Name     string        `json:"name"` // before_deploy, after_deploy, on_failure
	Command  string        `json:"command"`
	ExitCode int           `json:"exit_code"`
	Output   string        `json:"output,omitempty"`
	Duration time.Duration `json:"duration_ns"`
	Error    string        `json:"error,omitempty"`
}

// deployReport is what a registry that keeps track of its hosts is told
// after each deploy attempt.
type deployReport struct {
	ID      string // the release ID the registry gave
	Tag     string
	Command string // server or assets
	Host    string
	Err     string // empty on success
	Event   deployEvent
}

// reporter is a registry that wants deploy reports (gRPC Report, an object
// in a bucket, a GitHub asset). A failing report is logged, never fatal.
type reporter interface {
	report(ctx context.Context, r deployReport) error
}
