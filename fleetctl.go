package main

// What hosts of one fleet share for operator control: a fleet-wide pause,
// quarantined releases, and each host's status for `dewy status --fleet`.
// All of it lives in the backend only and means something only when the
// backend is shared (redis, consul); with file:// or memory:// there is no
// fleet and these answer "nothing".

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// quarantineInfo marks a release bad for the whole fleet.
type quarantineInfo struct {
	Tag    string    `json:"tag"`
	Reason string    `json:"reason"`
	Host   string    `json:"host"` // where it failed or was rolled back
	At     time.Time `json:"at"`
}

// fleetHost is what one host reports about itself after each poll.
type fleetHost struct {
	Host       string     `json:"host"`
	Command    string     `json:"command"`
	Current    string     `json:"current,omitempty"`
	Since      time.Time  `json:"since,omitzero"`
	Healthy    bool       `json:"healthy"`
	Problems   []string   `json:"problems,omitempty"`
	Paused     *pauseInfo `json:"paused,omitempty"`
	Pending    string     `json:"pending,omitempty"`     // newest release, not deployed
	PendingWhy string     `json:"pending_why,omitempty"` // why not
	At         time.Time  `json:"at"`                    // when it reported
}

// fleetJSON is GET /fleet: the fleet as the shared cache knows it.
type fleetJSON struct {
	Time        time.Time        `json:"time"`
	Paused      *pauseInfo       `json:"paused,omitempty"`
	Quarantined []quarantineInfo `json:"quarantined,omitempty"`
	Hosts       []fleetHost      `json:"hosts"`
}

func fleetPauseKey(app string) string { return appKey(app, "control", "pause") }
func quarantinePrefix(app string) string {
	return appKey(app, "quarantine") + "/"
}
func hostStatusKey(app, host string) string {
	return appKey(app, "hosts", url.PathEscape(host), "status")
}

// getJSON reads key into v; found is false when the key is absent.
func (cs *cacheSetup) getJSON(ctx context.Context, op, key string, v any) (found bool, err error) {
	var data []byte
	err = cs.call(ctx, op, "going on without it", func(ctx context.Context) (err error) {
		data, err = cs.c.get(ctx, key)
		return err
	})
	if errors.Is(err, errNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, fmt.Errorf("%s: %s unreadable: %w", op, key, err)
	}
	return true, nil
}

func (cs *cacheSetup) putJSON(ctx context.Context, op, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return cs.call(ctx, op, "not shared with the fleet", func(ctx context.Context) error {
		return cs.c.put(ctx, key, data)
	})
}

// setFleetPause pauses every host of app, or with p nil resumes them.
func (cs *cacheSetup) setFleetPause(ctx context.Context, app string, p *pauseInfo) error {
	if p == nil {
		return cs.call(ctx, "fleet resume", "the fleet stays paused", func(ctx context.Context) error {
			return cs.c.delete(ctx, fleetPauseKey(app))
		})
	}
	return cs.putJSON(ctx, "fleet pause", fleetPauseKey(app), p)
}

// fleetPause returns the fleet's pause, nil when it is not paused.
func (cs *cacheSetup) fleetPause(ctx context.Context, app string) (*pauseInfo, error) {
	if cs == nil || !cs.remote {
		return nil, nil
	}
	var p pauseInfo
	if ok, err := cs.getJSON(ctx, "fleet pause", fleetPauseKey(app), &p); !ok {
		return nil, err
	}
	return &p, nil
}

func (cs *cacheSetup) quarantine(ctx context.Context, app string, q quarantineInfo) error {
	return cs.putJSON(ctx, "quarantine", quarantinePrefix(app)+url.PathEscape(q.Tag), q)
}

// quarantined returns tag's quarantine, nil when it has none.
func (cs *cacheSetup) quarantined(ctx context.Context, app, tag string) (*quarantineInfo, error) {
	if cs == nil || !cs.remote {
		return nil, nil
	}
	var q quarantineInfo
	if ok, err := cs.getJSON(ctx, "quarantine", quarantinePrefix(app)+url.PathEscape(tag), &q); !ok {
		return nil, err
	}
	return &q, nil
}

// quarantinedAll returns every quarantined release of app.
func (cs *cacheSetup) quarantinedAll(ctx context.Context, app string) ([]quarantineInfo, error) {
	keys, err := cs.list(ctx, quarantinePrefix(app))
	if err != nil {
		return nil, err
	}
	var qs []quarantineInfo
	for _, k := range keys {
		var q quarantineInfo
		if ok, _ := cs.getJSON(ctx, "quarantine", k, &q); ok {
			qs = append(qs, q)
		}
	}
	slices.SortFunc(qs, func(a, b quarantineInfo) int { return a.At.Compare(b.At) })
	return qs, nil
}

// clearQuarantine lifts every quarantine of app and returns the tags.
func (cs *cacheSetup) clearQuarantine(ctx context.Context, app string) ([]string, error) {
	qs, err := cs.quarantinedAll(ctx, app)
	if err != nil {
		return nil, err
	}
	var tags []string
	for _, q := range qs {
		err := cs.call(ctx, "clear quarantine", "the release stays quarantined", func(ctx context.Context) error {
			return cs.c.delete(ctx, quarantinePrefix(app)+url.PathEscape(q.Tag))
		})
		if err != nil {
			return tags, err
		}
		tags = append(tags, q.Tag)
	}
	return tags, nil
}

func (cs *cacheSetup) list(ctx context.Context, prefix string) ([]string, error) {
	var keys []string
	err := cs.call(ctx, "list", "the fleet view is incomplete", func(ctx context.Context) (err error) {
		keys, err = cs.c.list(ctx, prefix)
		return err
	})
	return keys, err
}

// putHostStatus shares this host's status with the fleet.
func (cs *cacheSetup) putHostStatus(ctx context.Context, app string, h fleetHost) error {
	return cs.putJSON(ctx, "host status", hostStatusKey(app, h.Host), h)
}

// fleet reads what the shared cache knows about app's hosts.
func (cs *cacheSetup) fleet(ctx context.Context, app string) (fleetJSON, error) {
	f := fleetJSON{Time: cs.now().UTC(), Hosts: []fleetHost{}}
	if !cs.remote {
		return f, fmt.Errorf("fleet status: %w", errNoFleet)
	}
	var err error
	if f.Paused, err = cs.fleetPause(ctx, app); err != nil {
		return f, fmt.Errorf("fleet status: %w", err)
	}
	if f.Quarantined, err = cs.quarantinedAll(ctx, app); err != nil {
		return f, fmt.Errorf("fleet status: %w", err)
	}
	keys, err := cs.list(ctx, appKey(app, "hosts")+"/")
	if err != nil {
		return f, fmt.Errorf("fleet status: %w", err)
	}
	for _, k := range keys {
		if !strings.HasSuffix(k, "/status") {
			continue
		}
		var h fleetHost
		if ok, _ := cs.getJSON(ctx, "host status", k, &h); ok {
			f.Hosts = append(f.Hosts, h)
		}
	}
	slices.SortFunc(f.Hosts, func(a, b fleetHost) int { return strings.Compare(a.Host, b.Host) })
	return f, nil
}

// reportHost shares this host's status after a poll, with a shared cache.
func (d *deployer) reportHost(ctx context.Context) {
	if d.cache == nil || !d.cache.remote {
		return
	}
	s := d.obs.snapshot()
	p := s.problems()
	h := fleetHost{Host: d.cfg.HostID, Command: s.Command, Current: s.Current, Since: s.CurrentSince,
		Healthy: len(p) == 0, Problems: p, Paused: s.Paused, Pending: s.Pending, PendingWhy: s.PendingWhy, At: s.Time}
	_ = d.cache.putHostStatus(ctx, d.fleet, h)
}
