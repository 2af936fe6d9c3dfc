package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// MemoryCgroup is a memory cgroup made for one test: a process in it is
// held to Limit bytes by the kernel, as a container with that memory limit
// would be, and reads that limit from its cgroup as it would in one.
type MemoryCgroup struct {
	Dir   string
	Limit int64
	v2    bool
}

// NewMemoryCgroup makes a memory cgroup below this process's own, limited to
// limit bytes, removed at the end of the test. The error says why one
// cannot be made here (no writable cgroup filesystem, not root).
func NewMemoryCgroup(t testing.TB, limit int64) (*MemoryCgroup, error) {
	t.Helper()
	parent, v2, err := ownMemoryCgroup()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(parent, fmt.Sprintf("riposte-test-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("making a memory cgroup: %w", err)
	}
	t.Cleanup(func() { // after the processes in it stopped (cleanups run last first)
		if err := os.Remove(dir); err != nil {
			t.Logf("removing the memory cgroup %s: %v", dir, err)
		}
	})
	c := &MemoryCgroup{Dir: dir, Limit: limit, v2: v2}
	if err := os.WriteFile(c.file("memory.limit_in_bytes", "memory.max"), []byte(strconv.FormatInt(limit, 10)), 0o644); err != nil {
		return nil, fmt.Errorf("limiting the memory cgroup: %w", err)
	}
	return c, nil
}

// file is the path of one of the cgroup's files, named as cgroup v1 or v2
// names it.
func (c *MemoryCgroup) file(v1, v2 string) string {
	if c.v2 {
		return filepath.Join(c.Dir, v2)
	}
	return filepath.Join(c.Dir, v1)
}

// Wrap runs bin with args inside the cgroup from its first instruction: a
// shell joins the cgroup, then becomes bin (same pid). bin's pages are
// dropped from the page cache first, so that, as in a container started
// from its image, the pages it reads are charged to its cgroup and not to
// whoever wrote the file (a cgroup pays for the page cache it brings in).
func (c *MemoryCgroup) Wrap(bin string, args []string) (string, []string, error) {
	if err := dropFromPageCache(bin); err != nil {
		return "", nil, err
	}
	return "/bin/sh", append([]string{"-c", `echo $$ > "$0/cgroup.procs" && exec "$@"`, c.Dir, bin}, args...), nil
}

func dropFromPageCache(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	if err := f.Sync(); err != nil { // dirty pages stay cached
		return err
	}
	return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}

// Peak is the most memory the kernel charged to the cgroup (anonymous
// memory and the page cache of the files its processes read), in bytes.
func (c *MemoryCgroup) Peak() (int64, error) {
	b, err := os.ReadFile(c.file("memory.max_usage_in_bytes", "memory.peak"))
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// OOMKills is how many times the kernel killed a process in the cgroup for
// passing its limit.
func (c *MemoryCgroup) OOMKills() (int64, error) {
	path := c.file("memory.oom_control", "memory.events")
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == "oom_kill" {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("%s has no oom_kill count", path)
}

// ownMemoryCgroup finds this process's memory cgroup directory: on cgroup
// v1 the memory controller's hierarchy, on v2 the unified one.
func ownMemoryCgroup() (dir string, v2 bool, err error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", false, err
	}
	unified := ""
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			unified = parts[2]
		}
		for _, ctl := range strings.Split(parts[1], ",") {
			if ctl == "memory" {
				return filepath.Join("/sys/fs/cgroup/memory", parts[2]), false, nil
			}
		}
	}
	if unified == "" {
		return "", false, fmt.Errorf("no memory cgroup in /proc/self/cgroup")
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err != nil {
		return "", false, fmt.Errorf("no cgroup v2 filesystem at /sys/fs/cgroup: %w", err)
	}
	return filepath.Join("/sys/fs/cgroup", unified), true, nil
}
