//go:build !unix

package record

import "os"

// openNoFollow opens a file for reading; the caller refuses what is not a
// regular file.
func openNoFollow(path string) (*os.File, error) { return os.Open(path) }
