package record

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// Dir is a sink in a directory (a PersistentVolume in a cluster): records
// under records/, public keys under keys/. A record is written to a
// temporary file, synced, then linked to its name, which fails if the name
// exists: no record is ever half written or overwritten.
type Dir struct {
	Path string
}

func (d Dir) String() string { return "dir:" + d.Path }

func (d Dir) records() string { return filepath.Join(d.Path, "records") }
func (d Dir) keys() string    { return filepath.Join(d.Path, "keys") }

// Put stores a record, create-only.
func (d Dir) Put(_ context.Context, seq int64, data []byte) error {
	return d.create(d.records(), recordName(seq), data)
}

func (d Dir) create(dir, name string, data []byte) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("record sink %s: %w", d, err)
	}
	tmp, err := os.CreateTemp(dir, ".tmp-"+name+"-*")
	if err != nil {
		return fmt.Errorf("record sink %s: %w", d, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("record sink %s: writing %s: %w", d, name, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("record sink %s: syncing %s: %w", d, name, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("record sink %s: %w", d, err)
	}
	if err := os.Link(tmp.Name(), filepath.Join(dir, name)); errors.Is(err, fs.ErrExist) {
		return ErrExists
	} else if err != nil {
		return fmt.Errorf("record sink %s: storing %s: %w", d, name, err)
	}
	return syncDir(dir)
}

// syncDir makes a new name in dir survive a crash of the machine.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// Last reads the record with the highest sequence.
func (d Dir) Last(context.Context) (int64, []byte, error) {
	names, err := d.names()
	if err != nil || len(names) == 0 {
		return 0, nil, err
	}
	name := names[len(names)-1]
	seq, _ := SequenceOfName(name)
	data, err := d.read(name)
	return seq, data, err
}

// Get reads the record stored under seq.
func (d Dir) Get(_ context.Context, seq int64) ([]byte, error) {
	data, err := d.read(recordName(seq))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return data, err
}

// read reads a record's file. A record is a regular file: what else has
// its name (a link to elsewhere, a pipe that would block) is refused.
func (d Dir) read(name string) ([]byte, error) {
	f, err := openNoFollow(filepath.Join(d.records(), name))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("record sink %s: %s: %w", d, name, err)
	}
	defer f.Close()
	if info, err := f.Stat(); err != nil {
		return nil, fmt.Errorf("record sink %s: %s: %w", d, name, err)
	} else if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("record sink %s: %s is not a regular file (%s): records are files", d, name, info.Mode().Type())
	}
	return io.ReadAll(io.LimitReader(f, maxRecordBytes))
}

// names are the records' names, in order.
func (d Dir) names() ([]string, error) {
	entries, err := os.ReadDir(d.records())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("record sink %s: %w", d, err)
	}
	var names []string
	for _, e := range entries {
		if _, ok := SequenceOfName(e.Name()); ok && e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	return names, nil
}

// Walk reads every record in order. Files that are not records (other
// names) are passed too, so a reader can say something is there that
// should not be.
func (d Dir) Walk(ctx context.Context, fn func(name string, data []byte) error) error {
	entries, err := os.ReadDir(d.records())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("record sink %s: %w", d, err)
	}
	for _, e := range entries {
		if e.IsDir() || len(e.Name()) > 4 && e.Name()[:5] == ".tmp-" {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if !e.Type().IsRegular() {
			// Reported to the reader, not read: a pipe would block it.
			if err := fn(e.Name(), nil); err != nil {
				return err
			}
			continue
		}
		data, err := d.read(e.Name())
		if err != nil {
			return err
		}
		if err := fn(e.Name(), data); err != nil {
			return err
		}
	}
	return nil
}

// PutKey stores a public key once.
func (d Dir) PutKey(_ context.Context, id string, pem []byte) error {
	if err := d.create(d.keys(), keyName(id), pem); err != nil && !errors.Is(err, ErrExists) {
		return err
	}
	return nil
}

// Keys reads the public keys stored beside the records.
func (d Dir) Keys(context.Context) (map[string][]byte, error) {
	entries, err := os.ReadDir(d.keys())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("record sink %s: %w", d, err)
	}
	keys := map[string][]byte{}
	for _, e := range entries {
		id, ok := keyIDOfName(e.Name())
		if !ok || e.IsDir() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(d.keys(), e.Name()))
		if err != nil {
			return nil, fmt.Errorf("record sink %s: %w", d, err)
		}
		keys[id] = data
	}
	return keys, nil
}
