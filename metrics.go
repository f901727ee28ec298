//go:build !nometrics

package main

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics is dewy's Prometheus instrumentation. It has a registry of its
// own rather than the global default, so that nothing a library registers
// behind dewy's back shows up on /metrics, and tests can make as many as
// they like. A nil *metrics ignores every observation.
type metrics struct {
	reg *prometheus.Registry

	deploys        *prometheus.CounterVec
	deployDuration *prometheus.HistogramVec
	pollErrors     prometheus.Counter
	lastPoll       prometheus.Gauge
	rollbacks      prometheus.Counter
	up             prometheus.Gauge
	childRestarts  prometheus.Counter
	downloadBytes  prometheus.Counter
	release        *prometheus.GaugeVec

	mu  sync.Mutex // serialises changes of release, which are reset-then-set
	cur string
}

// newMetrics registers dewy's metrics; dewyVersion labels dewy_build_info.
func newMetrics(dewyVersion string) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		deploys: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dewy_deploys_total",
			Help: "Deploy attempts by outcome: ok, failed (nothing swapped) or rolled_back (the release did not start).",
		}, []string{"outcome"}),
		deployDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "dewy_deploy_duration_seconds",
			Help: "Time from the start of a deploy to its outcome: download, verification, unpacking and the new child getting ready.",
			// A deploy is a download plus a start-up: seconds to minutes.
			Buckets: []float64{0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600},
		}, []string{"outcome"}),
		pollErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dewy_poll_errors_total",
			Help: "Registry checks that failed.",
		}),
		lastPoll: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dewy_last_successful_poll_timestamp_seconds",
			Help: "Unix time of the last registry check that succeeded.",
		}),
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dewy_serving",
			Help: "1 while a release serves (or, for assets, is in place); 0 while nothing does and the sockets refuse connections.",
		}),
		rollbacks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dewy_rollbacks_total",
			Help: "Deploys whose release failed to start, so the previous release kept serving.",
		}),
		childRestarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dewy_child_restarts_total",
			Help: "Starts of the application that were not deploys: after a crash, or on request.",
		}),
		downloadBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dewy_download_bytes_total",
			Help: "Bytes of release artifacts downloaded.",
		}),
		release: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dewy_release_info",
			Help: "The release that is live, as the version label; always 1.",
		}, []string{"version"}),
	}
	m.register(dewyVersion)
	return m
}

// register adds m's metrics, dewy's build info and the Go runtime and
// process collectors to m's own registry.
func (m *metrics) register(dewyVersion string) {
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "dewy_build_info",
		Help:        "dewy's own version, as the version label; always 1.",
		ConstLabels: prometheus.Labels{"version": dewyVersion},
	})
	build.Set(1)
	// Every outcome is present from the start, so that rate() and alerts
	// see a 0 rather than an absent series before the first failure.
	for _, o := range []string{outcomeOK, outcomeFailed, outcomeRolledBack} {
		m.deploys.WithLabelValues(o)
	}
	m.reg.MustRegister(
		m.deploys, m.deployDuration, m.pollErrors, m.lastPoll, m.rollbacks, m.up,
		m.childRestarts, m.downloadBytes, m.release, build,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
}

// observeDeploy records one deploy attempt; outcome is ok, failed or
// rolled_back.
func (m *metrics) observeDeploy(outcome string, d time.Duration) {
	if m == nil {
		return
	}
	m.deploys.WithLabelValues(outcome).Inc()
	m.deployDuration.WithLabelValues(outcome).Observe(d.Seconds())
	if outcome == outcomeRolledBack {
		m.rollbacks.Inc()
	}
}

func (m *metrics) pollError() {
	if m == nil {
		return
	}
	m.pollErrors.Inc()
}

func (m *metrics) pollOK(at time.Time) {
	if m == nil {
		return
	}
	m.lastPoll.Set(float64(at.UnixNano()) / 1e9)
}

func (m *metrics) childRestart() {
	if m == nil {
		return
	}
	m.childRestarts.Inc()
}

// serving records whether anything serves; see dewy_serving.
func (m *metrics) serving(up bool) {
	if m == nil {
		return
	}
	if up {
		m.up.Set(1)
	} else {
		m.up.Set(0)
	}
}

func (m *metrics) downloaded(bytes int64) {
	if m == nil || bytes <= 0 {
		return
	}
	m.downloadBytes.Add(float64(bytes))
}

// current makes version the only dewy_release_info series: a scrape must
// never see two releases live at once.
func (m *metrics) current(version string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if version == m.cur {
		return
	}
	m.cur = version
	m.release.Reset()
	if version != "" {
		m.release.WithLabelValues(version).Set(1)
	}
}

// handler serves the registry in the Prometheus text format.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}
