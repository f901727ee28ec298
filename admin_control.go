package main

import (
	"cmp"
	"context"
	_ "embed"
	"errors"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// peerKey carries who is on the other end of an admin connection.
type peerKey struct{}

// withPeer is the admin server's ConnContext: it names the peer once per
// connection, by uid on a unix socket and by address over TCP.
func withPeer(ctx context.Context, c net.Conn) context.Context {
	name := c.RemoteAddr().String()
	if uc, ok := c.(*net.UnixConn); ok {
		name = unixPeer(uc)
	}
	return context.WithValue(ctx, peerKey{}, name)
}

func peerOf(r *http.Request) string {
	if s, ok := r.Context().Value(peerKey{}).(string); ok && s != "" {
		return s
	}
	return remoteName(r)
}

// routeControls adds the operator controls, the fleet view and the status
// page. Every POST passes cross-origin protection, as /deploy does.
func (a *adminServer) routeControls(mux *http.ServeMux, cop *http.CrossOriginProtection) {
	if a.act.control == nil {
		return
	}
	for _, action := range []string{"rollback", "pause", "resume", "pin"} {
		mux.Handle("POST /"+action, cop.Handler(a.controlHandler(action)))
	}
	mux.HandleFunc("GET /fleet", a.fleet)
	mux.HandleFunc("GET /{$}", a.page)
}

// controlHandler serves POST /<action>. It takes form fields to, reason
// and fleet. A form on the status page (page=1) is sent back to the page.
func (a *adminServer) controlHandler(action string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
		req := controlRequest{Action: action, To: strings.TrimSpace(r.FormValue("to")),
			Reason: oneLine(r.FormValue("reason")), By: peerOf(r)}
		req.Fleet = r.FormValue("fleet") == "1" || r.FormValue("fleet") == "true"
		if len(req.Reason) > 500 || len(req.To) > 200 || strings.ContainsFunc(req.To, func(c rune) bool { return c < 0x20 || c == 0x7f }) {
			http.Error(w, "reason or tag too long or not printable", http.StatusBadRequest)
			return
		}
		a.log.Info(action+" requested over the admin endpoint", "by", req.By, "to", req.To, "fleet", req.Fleet, "reason", req.Reason)
		// Like a restart, a control is not abandoned when the client hangs up.
		msg, err := a.act.control(a.ctx, req)
		if err == nil && action == "resume" && a.act.deploy != nil {
			a.act.deploy() // deploy what was held back without waiting for the next poll
		}
		if err != nil {
			a.log.Error(action+" failed", "by", req.By, "err", err)
		}
		if r.FormValue("page") == "1" {
			q := url.Values{}
			if err != nil {
				q.Set("err", err.Error())
			} else {
				q.Set("msg", msg)
			}
			http.Redirect(w, r, "/?"+q.Encode(), http.StatusSeeOther)
			return
		}
		if err != nil {
			code := http.StatusInternalServerError
			switch {
			case errors.Is(err, errControl), errors.Is(err, errNoFleet):
				code = http.StatusConflict
			case errors.Is(err, errHealth):
				code = http.StatusBadGateway
			}
			writeJSON(w, code, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"result": msg})
	})
}

func (a *adminServer) fleet(w http.ResponseWriter, r *http.Request) {
	if a.act.fleet == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": errNoFleet.Error()})
		return
	}
	f, err := a.act.fleet(r.Context())
	if err != nil {
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": err.Error()})
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, f)
}

//go:embed web/status.html
var statusPageHTML string

var statusPage = template.Must(template.New("status").Funcs(template.FuncMap{
	"ago":   func(t, now time.Time) string { return age(now.Sub(t)) + " ago" },
	"short": shortDigest,
	"stamp": func(t time.Time) string {
		return t.Local().Format("2006-01-02 15:04:05")
	},
}).Parse(statusPageHTML))

// pageData is what the status page shows.
type pageData struct {
	S        statusJSON
	Problems []string
	Msg, Err string
	Events   []deployEvent // newest first
	Fleet    *fleetJSON
	FleetErr string
}

// page serves the status page: the same facts as /status and /fleet, and
// the last deploys from the audit log, as plain HTML with forms.
func (a *adminServer) page(w http.ResponseWriter, r *http.Request) {
	d := pageData{S: a.board.snapshot(), Msg: r.FormValue("msg"), Err: r.FormValue("err")}
	d.Problems = d.S.problems()
	if a.act.history != nil {
		events, _ := a.act.history() // a torn line still leaves the good ones
		events = slices.DeleteFunc(events, func(e deployEvent) bool { return e.Kind == eventStarted || e.Kind == eventStopped })
		slices.SortStableFunc(events, func(x, y deployEvent) int { return cmp.Compare(y.Time.UnixNano(), x.Time.UnixNano()) })
		d.Events = events[:min(len(events), 15)]
	}
	if a.act.fleet != nil {
		f, err := a.act.fleet(r.Context())
		d.Fleet = &f
		if err != nil {
			d.FleetErr = err.Error()
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	// Nothing on the page comes from elsewhere; framing and scripts are refused.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
	if err := statusPage.Execute(w, d); err != nil {
		a.log.Debug("status page", "err", err)
	}
}
