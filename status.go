package main

import (
	"slices"
	"strings"
	"sync"
	"time"
)

// statusJSON is what GET /status answers and `dewy status` reads. Times are
// RFC 3339; a zero time is left out. It never carries a secret: the registry
// arrives already redacted.
type statusJSON struct {
	Time        time.Time `json:"time"` // when the snapshot was taken, so readers need not trust their own clock
	DewyVersion string    `json:"dewy_version"`
	Command     string    `json:"command"` // server or assets
	Registry    string    `json:"registry"`
	Slot        string    `json:"slot,omitempty"` // --slot: the only build metadata deployed
	Cache       string    `json:"cache,omitempty"`
	Listeners   []string  `json:"listeners,omitempty"`

	Current      string    `json:"current,omitempty"`
	CurrentSince time.Time `json:"current_since,omitzero"`
	SHA256       string    `json:"sha256,omitempty"`
	VerifiedBy   string    `json:"verified_by,omitempty"` // what vouched for the digest

	LastPoll        time.Time `json:"last_poll,omitzero"`
	LastPollResult  string    `json:"last_poll_result,omitempty"` // ok or error
	PollErrorStreak int       `json:"poll_error_streak"`          // failed polls in a row, 0 after a good one
	NextPoll        time.Time `json:"next_poll,omitzero"`
	LastError       string    `json:"last_error,omitempty"`
	LastErrorAt     time.Time `json:"last_error_at,omitzero"`

	Failed []failedStatus `json:"failed,omitempty"` // releases that will not be tried again as they are

	ChildPID    int    `json:"child_pid,omitempty"` // 0 or absent: no child running
	Generation  int    `json:"generation,omitempty"`
	Restarts    int    `json:"restarts"`
	LeaseHolder string `json:"lease_holder,omitempty"`
	// Down says nothing serves and the sockets refuse connections, and why.
	Down      string    `json:"down,omitempty"`
	DownSince time.Time `json:"down_since,omitzero"`

	Paused     *pauseInfo `json:"paused,omitempty"`      // deploys held on this host
	Held       []string   `json:"held,omitempty"`        // releases rolled back from
	Pending    string     `json:"pending,omitempty"`     // the newest release, when it is not live: what would deploy
	PendingWhy string     `json:"pending_why,omitempty"` // why it is not deployed yet
}

// failedStatus is one release that failed to deploy.
type failedStatus struct {
	Version string `json:"version"`
	Reason  string `json:"reason"`
}

// statusBoard collects what the poll loop, the deployer and the supervisor
// report, for the admin API. It is safe for concurrent use, and a nil board
// ignores every report, so callers need not check whether --admin is on.
type statusBoard struct {
	mu  sync.Mutex
	now func() time.Time
	s   statusJSON
}

func newStatusBoard(command, registry, cacheKind string, listeners []string) *statusBoard {
	return &statusBoard{now: time.Now, s: statusJSON{
		DewyVersion: version,
		Command:     command,
		Registry:    registry,
		Cache:       cacheKind,
		Listeners:   slices.Clone(listeners),
	}}
}

// deploySlot records the --slot this dewy deploys; "" for none.
func (b *statusBoard) deploySlot(slot string) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.s.Slot = slot
}

// pollDone records one registry check; next is when the following one is due.
func (b *statusBoard) pollDone(at time.Time, err error, next time.Time) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.s.LastPoll, b.s.NextPoll = at, next
	if err == nil {
		b.s.LastPollResult, b.s.PollErrorStreak = "ok", 0
		return
	}
	b.s.LastPollResult = "error"
	b.s.PollErrorStreak++
	b.s.LastError, b.s.LastErrorAt = oneLine(err.Error()), at
}

// deployed records that version is live since at; a release that failed
// before and now deployed is no longer listed as failed.
func (b *statusBoard) deployed(version, sha256, verifiedBy string, at time.Time) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.s.Current, b.s.SHA256, b.s.VerifiedBy, b.s.CurrentSince = version, sha256, verifiedBy, at
	if b.s.Pending == version {
		b.s.Pending, b.s.PendingWhy = "", ""
	}
	b.s.Failed = slices.DeleteFunc(b.s.Failed, func(f failedStatus) bool { return f.Version == version })
}

// failed records that version will not be deployed as it is; a later
// failure of the same version replaces the reason.
func (b *statusBoard) failed(version, reason string) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	reason = oneLine(reason)
	b.s.LastError, b.s.LastErrorAt = reason, b.now()
	if i := slices.IndexFunc(b.s.Failed, func(f failedStatus) bool { return f.Version == version }); i >= 0 {
		b.s.Failed[i].Reason = reason
		return
	}
	b.s.Failed = append(b.s.Failed, failedStatus{Version: version, Reason: reason})
}

// child records the live generation of the application; pid 0 means none
// is running. restarts counts starts of the same release after a crash or
// on request, not deploys.
func (b *statusBoard) child(pid, generation, restarts int) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.s.ChildPID, b.s.Generation, b.s.Restarts = pid, generation, restarts
}

// down records that nothing serves, and why; "" when something serves again.
func (b *statusBoard) down(why string) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.s.Down, b.s.DownSince = oneLine(why), time.Time{}
	if why != "" {
		b.s.DownSince = b.now()
	}
}

// lease records which host holds the fleet's deploy lease; "" when none.
func (b *statusBoard) lease(holder string) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.s.LeaseHolder = holder
}

// control records this host's pause and held releases.
func (b *statusBoard) control(p *pauseInfo, held []string) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.s.Paused, b.s.Held = p, slices.Clone(held)
}

// pending records that version is the newest release and, with why, what
// keeps it from being deployed.
func (b *statusBoard) pending(version, why string) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.s.Pending, b.s.PendingWhy = version, why
}

// snapshot returns a copy that later reports do not change.
func (b *statusBoard) snapshot() statusJSON {
	if b == nil {
		return statusJSON{Time: time.Now()}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.s
	s.Time = b.now()
	s.Listeners = slices.Clone(b.s.Listeners)
	s.Failed = slices.Clone(b.s.Failed)
	s.Held = slices.Clone(b.s.Held)
	return s
}

// oneLine keeps multi-line errors (a hook's output, a wrapped HTTP body)
// from breaking the table `dewy status` prints.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
