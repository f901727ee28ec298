// Command dewy keeps a host running the newest release of an application:
// it polls a registry, downloads, verifies and unpacks the release, swaps it
// in atomically and restarts the application without dropping a request.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "__exec" {
		// The child-side shim of `dewy server`: becomes the application.
		err := execShim(os.Args[2:])
		fmt.Fprintf(os.Stderr, "dewy: %v\n", err)
		os.Exit(127)
	}
	cfg, err := parseArgs(os.Args[1:], os.Getenv)
	if err != nil {
		if errors.Is(err, errHelp) {
			fmt.Fprint(os.Stdout, usageText)
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "dewy: %v\n", err)
		os.Exit(2)
	}
	if err := run(context.Background(), cfg); err != nil {
		fmt.Fprintf(os.Stderr, "dewy: %v\n", err)
		var ue *usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}
