package main

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
)

// historyErrorWidth keeps the table one line per event on a terminal; the
// whole error is in the audit log.
const historyErrorWidth = 60

// printHistory writes the newest n events (all when n <= 0) as a table,
// newest first.
func printHistory(w io.Writer, events []deployEvent, n int) {
	if len(events) == 0 {
		fmt.Fprintln(w, "no deploy events recorded")
		return
	}
	// Several processes may share a log, so file order is only nearly
	// chronological; a stable sort keeps the file's order for ties.
	sorted := slices.Clone(events)
	slices.SortStableFunc(sorted, func(a, b deployEvent) int { return cmp.Compare(a.Time.UnixNano(), b.Time.UnixNano()) })
	if n > 0 && len(sorted) > n {
		sorted = sorted[len(sorted)-n:]
	}
	slices.Reverse(sorted)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tEVENT\tVERSION\tFROM\tHOST\tUSER\tDURATION\tERROR")
	for _, e := range sorted {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			e.Time.Format("2006-01-02 15:04:05Z07:00"),
			historyCell(e.Kind, 0),
			historyCell(e.Version, 0),
			historyCell(e.Previous, 0),
			historyCell(e.Host, 0),
			historyCell(e.User, 0),
			historyDuration(e.Duration),
			historyCell(e.Error, historyErrorWidth))
	}
	tw.Flush()
}

// historyCell makes a value safe for one table cell: no tabs, newlines or
// terminal escapes, at most width runes (0: no limit), "-" when empty.
func historyCell(s string, width int) string {
	s = strings.Join(strings.FieldsFunc(s, unicode.IsSpace), " ")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, s)
	if s == "" {
		return "-"
	}
	if width > 0 {
		if r := []rune(s); len(r) > width {
			return string(r[:width-1]) + "…"
		}
	}
	return s
}

func historyDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	}
	return d.Round(100 * time.Millisecond).String()
}
