//go:build nos3

package main

import "errors"

// Built with -tags nos3: the AWS SDK is not linked. s3:// keeps its rows in
// the scheme tables, so an s3:// registry is refused with errNoS3 when the
// configuration is checked (exit 2); an s3:// artifact URL is refused when
// that artifact is fetched.
var errNoS3 = errors.New("s3:// support left out of this build (built with -tags nos3)")

var newS3Registry, newS3Store, checkS3URL = leftOut(errNoS3)
