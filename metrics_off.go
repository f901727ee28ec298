//go:build nometrics

package main

import (
	"net/http"
	"time"
)

// metrics is left out of this build (-tags nometrics): the Prometheus
// client and protobuf are most of what an edge build would otherwise
// carry. /metrics is not served; /status still is.
type metrics struct{}

func newMetrics(string) *metrics { return nil }

func (m *metrics) observeDeploy(string, time.Duration) {}
func (m *metrics) pollError()                          {}
func (m *metrics) pollOK(time.Time)                    {}
func (m *metrics) childRestart()                       {}
func (m *metrics) downloaded(int64)                    {}
func (m *metrics) current(string)                      {}
func (m *metrics) serving(bool)                        {}
func (m *metrics) handler() http.Handler               { return http.NotFoundHandler() }
