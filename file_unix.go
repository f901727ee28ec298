//go:build unix

package main

import (
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// lstatEntry reads an entry's inode change time, which no copy tool can
// set: only the kernel does, to the time of the last change.
func lstatEntry(p string) (entryStat, error) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return entryStat{}, &os.PathError{Op: "lstat", Path: p, Err: err}
	}
	return entryStat{
		mode:  uint32(st.Mode),
		size:  int64(st.Size),
		ino:   uint64(st.Ino),
		mtime: time.Unix(st.Mtim.Unix()),
		ctime: time.Unix(st.Ctim.Unix()),
	}, nil
}
