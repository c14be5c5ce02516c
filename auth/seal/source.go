package seal

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spoold/spoold/configs/field"
)

// Source is where a key comes from, written "file:PATH", "credential:NAME"
// (a systemd credential: LoadCredential= or LoadCredentialEncrypted= in the
// unit, read from $CREDENTIALS_DIRECTORY/NAME) or "env:VARIABLE". A bare
// path is a file.
type Source struct {
	Kind string // "file", "credential" or "env"
	Name string // the path, credential name or variable
}

// Source kinds.
const (
	KindFile       = "file"
	KindCredential = "credential"
	KindEnv        = "env"
)

// ParseSource reads a source's text form.
func ParseSource(s string) (Source, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Source{}, errors.New("empty key source: want file:PATH, credential:NAME or env:VARIABLE")
	}
	kind, name, ok := strings.Cut(s, ":")
	if !ok || (kind != KindFile && kind != KindCredential && kind != KindEnv) {
		return Source{Kind: KindFile, Name: s}, nil
	}
	if name == "" {
		return Source{}, fmt.Errorf("key source %q names nothing: want file:PATH, credential:NAME or env:VARIABLE", s)
	}
	if kind == KindCredential && strings.ContainsRune(name, '/') {
		return Source{}, fmt.Errorf("key source %q: a credential name has no slash (the name given to LoadCredential=)", s)
	}
	return Source{Kind: kind, Name: name}, nil
}

func (s Source) String() string { return s.Kind + ":" + s.Name }

// describe is the source as messages name it.
func (s Source) describe() string {
	switch s.Kind {
	case KindCredential:
		return "systemd credential " + s.Name
	case KindEnv:
		return "environment variable " + s.Name
	}
	return "file " + s.Name
}

// LoadOptions are Load's injected dependencies.
type LoadOptions struct {
	Getenv func(string) string // default os.Getenv
	Rand   io.Reader           // randomness for a created key; default crypto/rand
	// Create makes a missing key file with a new key (mode 0600). Only for
	// file sources; spoold allows it when no record is sealed yet.
	Create bool
}

func (o LoadOptions) getenv(k string) string {
	if o.Getenv == nil {
		return os.Getenv(k)
	}
	return o.Getenv(k)
}

// ErrMissing: the source holds no key (no such file, credential or variable).
var ErrMissing = errors.New("no key there")

// adminError marks a key problem that only a person can fix (a key file
// others may read, a key that is not a key).
type adminError struct{ err error }

func (e adminError) Error() string { return e.err.Error() }
func (e adminError) Unwrap() error { return e.err }

// NeedsAdmin reports whether err is a key problem that starting again
// cannot fix: a missing key, a key file others may read, a malformed key,
// or stored records the loaded keys do not open. spoold exits with its
// config-error status for these, which its systemd unit does not restart,
// instead of failing the same way every few seconds.
func NeedsAdmin(err error) bool {
	var ae adminError
	var ue *UnopenableError
	return errors.As(err, &ae) || errors.As(err, &ue) || errors.Is(err, ErrMissing)
}

// Load reads the key. created reports that Create made a new key file.
func (s Source) Load(o LoadOptions) (k *Key, created bool, err error) {
	switch s.Kind {
	case KindEnv:
		v := o.getenv(s.Name)
		if v == "" {
			return nil, false, fmt.Errorf("the key's environment variable %s is not set or empty (secrets.key): %w", s.Name, ErrMissing)
		}
		k, err := ParseKey([]byte(v), s.describe())
		return k, false, err
	case KindCredential:
		dir := o.getenv("CREDENTIALS_DIRECTORY")
		if dir == "" {
			return nil, false, fmt.Errorf("the key is the systemd credential %s, but $CREDENTIALS_DIRECTORY is not set: add LoadCredential=%s:/etc/spoold/%s (or LoadCredentialEncrypted=) to the unit, or run spoold under systemd: %w", s.Name, s.Name, s.Name, ErrMissing)
		}
		b, err := os.ReadFile(filepath.Join(dir, s.Name))
		if errors.Is(err, os.ErrNotExist) {
			return nil, false, fmt.Errorf("the systemd credential %s is missing from %s: check the unit's LoadCredential= line: %w", s.Name, dir, ErrMissing)
		}
		if err != nil {
			return nil, false, fmt.Errorf("reading the systemd credential %s: %w", s.Name, field.UnwrapPathErr(err))
		}
		k, err := ParseKey(b, s.describe())
		return k, false, err
	}
	return loadFile(s.Name, o)
}

func loadFile(path string, o LoadOptions) (*Key, bool, error) {
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		if !o.Create {
			return nil, false, fmt.Errorf("the key file %s does not exist: restore it from your backup, or point secrets.key at the key: %w", path, ErrMissing)
		}
		text, err := GenerateText(o.Rand)
		if err != nil {
			return nil, false, err
		}
		if err := writeFileDurably(path, text); err != nil {
			return nil, false, fmt.Errorf("creating the key file %s: %w", path, err)
		}
		k, err := ParseKey(text, "file "+path)
		return k, true, err
	}
	if p := field.PrivateFile(path); p != "" {
		return nil, false, adminError{fmt.Errorf("the key file: %s", p)}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, false, fmt.Errorf("reading the key file %s: %w", path, field.UnwrapPathErr(err))
	}
	k, err := ParseKey(b, "file "+path)
	return k, false, err
}

// writeFileDurably writes data to path (mode 0600) through a temporary file,
// fsync'd and renamed, then fsyncs the directory: after a crash the file is
// either absent or whole.
func writeFileDurably(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return field.UnwrapPathErr(err)
	}
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return field.UnwrapPathErr(err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// PendingPath is where a rotation keeps the new key of the key file path
// until every record is sealed with it.
func PendingPath(path string) string { return path + ".new" }

// LoadPending reads the new key of an unfinished rotation of the key file
// s, or nil when there is none (and for sources that are not files).
func (s Source) LoadPending() (*Key, error) {
	if s.Kind != KindFile {
		return nil, nil
	}
	p := PendingPath(s.Name)
	os.Remove(p + ".tmp") // a rotation that died before its new key was whole
	if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	k, _, err := loadFile(p, LoadOptions{})
	if err != nil {
		return nil, fmt.Errorf("the new key of an unfinished rotation: %w", err)
	}
	return k, nil
}

// BeginRotation writes a new key next to the key file (PendingPath, 0600,
// fsync'd) and returns it; an unfinished rotation's new key is reused.
// Only a key file can be rotated by spoold: a credential or environment
// variable is replaced by its owner (see secrets.previous_keys).
func (s Source) BeginRotation(r io.Reader) (*Key, error) {
	if s.Kind != KindFile {
		return nil, fmt.Errorf("the key comes from the %s, which spoold cannot replace: create a new key with `spoolctl keys generate`, set it as secrets.key, list the old one under secrets.previous_keys and restart; spoold re-seals every record at start-up", s.describe())
	}
	if k, err := s.LoadPending(); err != nil || k != nil {
		return k, err
	}
	text, err := GenerateText(r)
	if err != nil {
		return nil, err
	}
	p := PendingPath(s.Name)
	if err := writeFileDurably(p, text); err != nil {
		return nil, fmt.Errorf("writing the new key to %s: %w (spoold must be able to write the key's directory to rotate it)", p, err)
	}
	return ParseKey(text, "file "+p)
}

// FinishRotation makes the pending new key the key file, retiring the old
// key. Call it only once every record is sealed with the new key.
func (s Source) FinishRotation() error {
	if s.Kind != KindFile {
		return nil
	}
	p := PendingPath(s.Name)
	if err := os.Rename(p, s.Name); err != nil {
		return fmt.Errorf("replacing the key file %s with the new key: %w", s.Name, field.UnwrapPathErr(err))
	}
	return syncDir(filepath.Dir(s.Name))
}
