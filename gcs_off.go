//go:build nogcs

package main

import "errors"

// Built with -tags nogcs: the Cloud Storage client is not linked. gs:// keeps
// its rows in the scheme tables, so a gs:// registry is refused with errNoGCS
// when the configuration is checked (exit 2); a gs:// artifact URL is
// refused when that artifact is fetched.
var errNoGCS = errors.New("gs:// support left out of this build (built with -tags nogcs)")

var newGCSRegistry, newGCSStore, checkGCSURL = leftOut(errNoGCS)
