//go:build !nometrics

package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrapeMetrics GETs /metrics over HTTP as Prometheus would and parses the text.
func scrapeMetrics(t *testing.T, a *adminServer) map[string]*dto.MetricFamily {
	t.Helper()
	client, base := adminClient(a.addrString())
	resp, err := client.Get(base + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics = %s, want 200", resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("GET /metrics Content-Type = %q, want the text format", ct)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// metricValue returns the value of name's series with exactly labels, and
// whether there is one.
func metricValue(fams map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		if len(m.GetLabel()) != len(labels) {
			continue
		}
		match := true
		for _, l := range m.GetLabel() {
			if labels[l.GetName()] != l.GetValue() {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func TestMetricsScrape(t *testing.T) {
	m := newMetrics("v0.9.0")
	a := startAdmin(t, "127.0.0.1:0", newStatusBoard("server", "", "", nil), m, adminActions{})

	fams := scrapeMetrics(t, a)
	for _, o := range []string{"ok", "failed", "rolled_back"} {
		if v, ok := metricValue(fams, "dewy_deploys_total", map[string]string{"outcome": o}); !ok || v != 0 {
			t.Errorf("before any deploy: dewy_deploys_total{outcome=%q} = %v (present %v), want 0", o, v, ok)
		}
	}
	if _, ok := fams["dewy_release_info"]; ok {
		t.Error("dewy_release_info present before any release is live")
	}
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("%s missing: the Go and process collectors are not registered", name)
		}
	}
	if v, ok := metricValue(fams, "dewy_build_info", map[string]string{"version": "v0.9.0"}); !ok || v != 1 {
		t.Errorf(`dewy_build_info{version="v0.9.0"} = %v (present %v), want 1`, v, ok)
	}

	// v1.2.0 deploys; v1.3.0 fails to start and rolls back; v1.4.0's
	// digest is wrong; the child crashes twice; polls fail then succeed.
	m.downloaded(1000)
	m.observeDeploy(outcomeOK, 3*time.Second)
	m.current("v1.2.0")
	m.downloaded(2000)
	m.observeDeploy(outcomeRolledBack, 40*time.Second)
	m.downloaded(500)
	m.observeDeploy(outcomeFailed, time.Second)
	m.childRestart()
	m.childRestart()
	m.pollError()
	polled := time.Unix(1_764_064_800, 500_000_000)
	m.pollOK(polled)

	fams = scrapeMetrics(t, a)
	tests := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"dewy_deploys_total", map[string]string{"outcome": "ok"}, 1},
		{"dewy_deploys_total", map[string]string{"outcome": "rolled_back"}, 1},
		{"dewy_deploys_total", map[string]string{"outcome": "failed"}, 1},
		{"dewy_deploy_duration_seconds", map[string]string{"outcome": "rolled_back"}, 1}, // sample count
		{"dewy_rollbacks_total", nil, 1},
		{"dewy_child_restarts_total", nil, 2},
		{"dewy_poll_errors_total", nil, 1},
		{"dewy_download_bytes_total", nil, 3500},
		{"dewy_last_successful_poll_timestamp_seconds", nil, 1_764_064_800.5},
		{"dewy_release_info", map[string]string{"version": "v1.2.0"}, 1},
	}
	for _, tt := range tests {
		if got, ok := metricValue(fams, tt.name, tt.labels); !ok || got != tt.want {
			t.Errorf("%s%v = %v (present %v), want %v", tt.name, tt.labels, got, ok, tt.want)
		}
	}
	h := fams["dewy_deploy_duration_seconds"]
	for _, mt := range h.GetMetric() {
		if mt.GetLabel()[0].GetValue() == "rolled_back" && mt.GetHistogram().GetSampleSum() != 40 {
			t.Errorf("rolled_back duration sum = %v, want 40", mt.GetHistogram().GetSampleSum())
		}
	}

	// A new release replaces the old series rather than adding one.
	m.current("v1.3.0")
	fams = scrapeMetrics(t, a)
	if n := len(fams["dewy_release_info"].GetMetric()); n != 1 {
		t.Errorf("dewy_release_info has %d series, want 1", n)
	}
	if _, ok := metricValue(fams, "dewy_release_info", map[string]string{"version": "v1.2.0"}); ok {
		t.Error(`dewy_release_info{version="v1.2.0"} still present after v1.3.0 went live`)
	}
	if v, ok := metricValue(fams, "dewy_release_info", map[string]string{"version": "v1.3.0"}); !ok || v != 1 {
		t.Errorf(`dewy_release_info{version="v1.3.0"} = %v (present %v), want 1`, v, ok)
	}
}

func TestMetricsNilIsOff(t *testing.T) {
	var m *metrics
	// With --admin off the deployer holds a nil *metrics; none of these may panic.
	m.observeDeploy(outcomeOK, time.Second)
	m.pollError()
	m.pollOK(time.Now())
	m.childRestart()
	m.downloaded(1)
	m.current("v1")
}

func TestMetricsOwnRegistry(t *testing.T) {
	// Two instances must not collide, which they would on the global registry.
	a, b := newMetrics("dev"), newMetrics("dev")
	a.childRestart()
	fa, err := a.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	fb, err := b.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	ga := map[string]*dto.MetricFamily{}
	for _, f := range fa {
		ga[f.GetName()] = f
	}
	gb := map[string]*dto.MetricFamily{}
	for _, f := range fb {
		gb[f.GetName()] = f
	}
	if got, _ := metricValue(ga, "dewy_child_restarts_total", nil); got != 1 {
		t.Errorf("first instance restarts = %v, want 1", got)
	}
	if got, _ := metricValue(gb, "dewy_child_restarts_total", nil); got != 0 {
		t.Errorf("second instance restarts = %v, want 0", got)
	}
}
