package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"
)

// parseControlArgs reads `dewy rollback [--to TAG]`, `dewy pause [--reason
// TEXT] [--fleet]`, `dewy resume [--fleet]` and `dewy pin TAG`, each with
// [--admin ADDR].
func parseControlArgs(command string, args []string, getenv func(string) string) (*config, error) {
	fs := flag.NewFlagSet(command, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c := &config{Command: command, Control: controlRequest{Action: command}}
	fs.StringVar(&c.Admin, "admin", getenv("DEWY_ADMIN"), "")
	switch command {
	case "rollback":
		fs.StringVar(&c.Control.To, "to", "", "")
	case "pause":
		fs.StringVar(&c.Control.Reason, "reason", "", "")
		fs.BoolVar(&c.Control.Fleet, "fleet", false, "")
	case "resume":
		fs.BoolVar(&c.Control.Fleet, "fleet", false, "")
	case "pin":
		fs.StringVar(&c.Control.Reason, "reason", "", "")
	}
	// The tag of `dewy pin TAG` may come before the flags.
	if command == "pin" && len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		c.Control.To, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, errHelp
		}
		return nil, &usageError{escapeControl(err.Error())}
	}
	rest := fs.Args()
	if command == "pin" && c.Control.To == "" && len(rest) > 0 {
		c.Control.To, rest = rest[0], rest[1:]
	}
	if len(rest) > 0 {
		return nil, usagef("%s: unexpected argument %q", command, escapeControl(rest[0]))
	}
	if command == "pin" && c.Control.To == "" {
		return nil, usagef("pin: name the release to pin: dewy pin TAG")
	}
	return c, nil
}

// controlCommand asks the dewy at addr to carry out req and prints what it did.
func controlCommand(ctx context.Context, addr string, req controlRequest, w io.Writer) error {
	if addr == "" {
		addr = defaultAdminAddr
	}
	// A rollback passes the health gate, which may take the health timeout.
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	form := url.Values{}
	for k, v := range map[string]string{"to": req.To, "reason": req.Reason} {
		if v != "" {
			form.Set(k, v)
		}
	}
	if req.Fleet {
		form.Set("fleet", "1")
	}
	var out struct{ Result, Error string }
	if err := adminCall(ctx, addr, http.MethodPost, "/"+req.Action, form, &out); err != nil {
		return fmt.Errorf("%s: %w", req.Action, err)
	}
	_, err := fmt.Fprintln(w, out.Result)
	return err
}

// adminCall sends one request to the admin endpoint and decodes its JSON
// answer into out; an answer other than 2xx is an error carrying its message.
func adminCall(ctx context.Context, addr, method, path string, form url.Values, out any) error {
	client, base := adminClient(addr)
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, body)
	if err != nil {
		return fmt.Errorf("%s: %w", addr, err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("%s: %w", addr, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%s: %w", addr, err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct{ Error string }
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("%s: %s: %s", addr, resp.Status, oneLine(string(data)))
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s: not dewy's answer: %w", addr, err)
	}
	return nil
}

// fleetStatusCommand is `dewy status --fleet`: every host of the fleet as
// the shared cache knows it.
func fleetStatusCommand(ctx context.Context, addr string, jsonOut bool, w io.Writer) error {
	if addr == "" {
		addr = defaultAdminAddr
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var f fleetJSON
	if err := adminCall(ctx, addr, http.MethodGet, "/fleet", nil, &f); err != nil {
		return fmt.Errorf("fleet status: %w", err)
	}
	if jsonOut {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(f)
	}
	return printFleet(w, f)
}

func printFleet(w io.Writer, f fleetJSON) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if f.Paused != nil {
		fmt.Fprintf(tw, "fleet %s (since %s)\n", f.Paused, stamp(f.Paused.At, f.Time))
	}
	for _, q := range f.Quarantined {
		fmt.Fprintf(tw, "quarantined %s: %s on %s (%s ago)\n", q.Tag, q.Reason, q.Host, age(f.Time.Sub(q.At)))
	}
	fmt.Fprintln(tw, "HOST\tRELEASE\tHEALTH\tDEPLOYED\tDEPLOYS\tREPORTED")
	for _, h := range f.Hosts {
		health := "ok"
		if !h.Healthy {
			health = "UNHEALTHY: " + strings.Join(h.Problems, "; ")
		}
		deployed := "-"
		if !h.Since.IsZero() {
			deployed = age(f.Time.Sub(h.Since)) + " ago"
		}
		state := "running"
		switch {
		case h.Paused != nil:
			state = h.Paused.String()
		case h.PendingWhy != "":
			state = h.Pending + " held: " + h.PendingWhy
		case h.Pending != "":
			state = "deploying " + h.Pending
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s ago\n", historyCell(h.Host, 0), historyCell(orNone(h.Current), 0),
			historyCell(health, 0), deployed, historyCell(state, 80), age(f.Time.Sub(h.At)))
	}
	return tw.Flush()
}
