//go:build !unix

package main

import (
	"os"
	"time"
)

// lstatEntry has no inode change time to read here, so the modification
// time stands in and the comparison between looks does the rest.
func lstatEntry(p string) (entryStat, error) {
	info, err := os.Lstat(p)
	if err != nil {
		return entryStat{}, err
	}
	return entryStat{mode: uint32(info.Mode()), size: info.Size(), mtime: info.ModTime(), ctime: info.ModTime()}, nil
}
