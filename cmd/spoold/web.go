package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	"github.com/spoold/spoold/cmd/spoold/adminapi"
	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
	"github.com/spoold/spoold/cmd/spoold/console"
	"github.com/spoold/spoold/configs"
	"github.com/spoold/spoold/ingest/scanfolder"
	"github.com/spoold/spoold/ingest/smtpd"
)

// consoleOptions converts the http section's web console, TLS and metrics
// token keys (convert.go's job, kept next to the console's wiring).
func consoleOptions(h configs.HTTP) console.Options {
	o := console.Options{
		Listen: h.Listen, Enabled: h.Console, TLS: h.TLS, CertFile: h.CertFile, KeyFile: h.KeyFile,
		MetricsToken: h.MetricsToken,
	}
	for _, u := range h.ConsoleUsers {
		o.Users = append(o.Users, console.User{Name: u.Name, PasswordHash: u.PasswordHash})
	}
	return o
}

// startWeb starts the HTTP listener: /metrics, /healthz, /readyz,
// /oauth2/callback and, unless http.console is false, the web console at /
// over the admin service svc. TLS when http.tls is set.
func (d *daemon) startWeb(p *plan, svc *adminapi.Service) (*httpServer, error) {
	opts := p.console
	opts.Logger = d.log
	var ui http.Handler // nil: no console (an untyped nil, so the mux sees none)
	var c *console.Console
	if opts.On() {
		var err error
		if c, err = console.New(svc.Handler(), opts); err != nil {
			return nil, err
		}
		ui = c
	}
	var tc *tls.Config
	if opts.TLS {
		var err error
		if tc, err = httpTLS(opts, p.tlsDir()); err != nil {
			return nil, err
		}
	}
	h := newHTTPHandler(d.reg, d.ready, d.auth.CallbackHandler(), ui, opts.MetricsToken.Reveal())
	s, err := startHTTP(p.cfg.HTTP.Listen, h, tc, d.log)
	if err != nil {
		return nil, bindProblem(err)
	}
	s.ui = c
	if ui != nil {
		d.log.Info("web console", "url", consoleURL(opts, s.Addr().String()), "access", opts.String())
	}
	return s, nil
}

func consoleURL(o console.Options, addr string) string {
	if o.TLS {
		return "https://" + addr + "/"
	}
	return "http://" + addr + "/"
}

// httpTLS loads http.cert_file/key_file, or the daemon's persisted
// self-signed certificate (the SMTP listeners' one).
func httpTLS(o console.Options, dir string) (*tls.Config, error) {
	var cert tls.Certificate
	var err error
	if o.CertFile != "" {
		cert, err = tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("http.cert_file: loading %s and %s: %w", o.CertFile, o.KeyFile, err)
		}
	} else {
		host, _ := os.Hostname()
		cert, _, err = smtpd.SelfSignedCertificate(dir, cmp.Or(host, "localhost"))
		if err != nil {
			return nil, fmt.Errorf("http.tls: self-signed certificate in %s: %w", dir, err)
		}
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// EffectiveConfig implements adminapi.EffectiveConfig: the running
// configuration as -print-config prints it.
func (i daemonInfo) EffectiveConfig() (string, []byte, error) {
	i.d.mu.Lock()
	cfg := i.d.cfg
	i.d.mu.Unlock()
	p, _ := buildPlan(cfg) // the running config was validated when it was applied
	var b bytes.Buffer
	if err := configs.Print(&b, p.effective()); err != nil {
		return "", nil, err
	}
	return i.d.cfgPath, b.Bytes(), nil
}

// errorSuffix is the scan folder's reason file next to a file in failed/
// (scanfolder writes it; the console reads the reason from it).
const errorSuffix = ".error.txt"

// maxScanWalk bounds the entries read from one processed/ or failed/ tree.
const maxScanWalk = 5000

// ScanFiles implements adminapi.ScanFiles: the newest files in each
// folder's processed/ and failed/, a failed one with its reason.
func (i daemonInfo) ScanFiles(_ context.Context, folder string, limit int) (wire.ScanFilesResponse, error) {
	resp := wire.ScanFilesResponse{Files: []wire.ScanFile{}}
	if i.d.scans == nil {
		return resp, nil
	}
	found := false
	for _, f := range i.d.scans.Folders() {
		if folder != "" && f.Name != folder {
			continue
		}
		found = true
		for _, failed := range []bool{true, false} {
			files, err := listScanDir(f, failed)
			if err != nil {
				resp.Errors = append(resp.Errors, err.Error())
			}
			resp.Files = append(resp.Files, files...)
		}
	}
	if !found && folder != "" {
		return resp, fmt.Errorf("%w: no scan folder named %q", adminapi.ErrNotFound, folder)
	}
	slices.SortFunc(resp.Files, func(a, b wire.ScanFile) int { return b.Time.Compare(a.Time) })
	resp.Files = resp.Files[:min(len(resp.Files), limit)]
	return resp, nil
}

func listScanDir(f scanfolder.FolderStatus, failed bool) ([]wire.ScanFile, error) {
	dir := scanfolder.ProcessedDir
	if failed {
		dir = scanfolder.FailedDir
	}
	root := filepath.Join(f.Path, dir)
	var out []wire.ScanFile
	n := 0
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == root {
				return fs.SkipAll // after_success: delete, or nothing failed yet
			}
			return err
		}
		if n++; n > maxScanWalk {
			return fs.SkipAll
		}
		name := e.Name()
		if e.IsDir() || !e.Type().IsRegular() || strings.HasSuffix(name, errorSuffix) || strings.HasSuffix(name, scanfolder.SidecarSuffix) {
			return nil
		}
		info, err := e.Info()
		if err != nil {
			return nil // moved away meanwhile
		}
		rel, _ := filepath.Rel(root, p)
		sf := wire.ScanFile{Folder: f.Name, Path: filepath.ToSlash(rel), Failed: failed, Size: info.Size(), Time: info.ModTime()}
		if failed {
			if ei, err := os.Stat(p + errorSuffix); err == nil {
				sf.Time = ei.ModTime() // when it failed, not when it was scanned
			}
			sf.Reason = failReason(p + errorSuffix)
		}
		out = append(out, sf)
		return nil
	})
	if err != nil {
		return out, fmt.Errorf("scan folder %s: reading %s/: %w", f.Name, dir, err)
	}
	return out, nil
}

// failReason reads the "Reason:" line the scan folder wrote.
func failReason(path string) string {
	fh, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer fh.Close()
	sc := bufio.NewScanner(io.LimitReader(fh, 16<<10))
	for sc.Scan() {
		if r, ok := strings.CutPrefix(sc.Text(), "Reason: "); ok {
			return strings.TrimSpace(r)
		}
	}
	return ""
}

// RetryScanFile implements adminapi.ScanFiles: failed/<rel> goes back to
// <folder>/<rel> (with its sidecar) and its reason file is removed, so the
// watcher takes it like a new scan. It moves within an os.Root, so a path
// cannot leave the folder.
func (i daemonInfo) RetryScanFile(_ context.Context, folder, rel string) (wire.ScanFile, error) {
	if i.d.scans == nil {
		return wire.ScanFile{}, fmt.Errorf("%w: no scan folder is configured", adminapi.ErrNotFound)
	}
	var f *scanfolder.FolderStatus
	for _, s := range i.d.scans.Folders() {
		if s.Name == folder {
			f = &s
			break
		}
	}
	if f == nil {
		return wire.ScanFile{}, fmt.Errorf("%w: no scan folder named %q", adminapi.ErrNotFound, folder)
	}
	clean := path.Clean(rel)
	if !fs.ValidPath(clean) || clean == "." || strings.HasSuffix(clean, errorSuffix) {
		return wire.ScanFile{}, fmt.Errorf("%w: %q is not a file in %s/", adminapi.ErrInvalidArgument, rel, scanfolder.FailedDir)
	}
	root, err := os.OpenRoot(f.Path)
	if err != nil {
		return wire.ScanFile{}, fmt.Errorf("opening scan folder %s: %w", f.Path, err)
	}
	defer root.Close()
	src := path.Join(scanfolder.FailedDir, clean)
	info, err := root.Stat(src)
	if errors.Is(err, fs.ErrNotExist) {
		return wire.ScanFile{}, fmt.Errorf("%w: folder %s has no failed file %s", adminapi.ErrNotFound, folder, clean)
	}
	if err != nil {
		return wire.ScanFile{}, fmt.Errorf("reading %s: %w", src, err)
	}
	if _, err := root.Stat(clean); err == nil {
		return wire.ScanFile{}, fmt.Errorf("%w: %s already exists in folder %s: move or rename it first", adminapi.ErrInvalidArgument, clean, folder)
	}
	if d := path.Dir(clean); d != "." {
		if err := root.MkdirAll(d, 0o750); err != nil {
			return wire.ScanFile{}, fmt.Errorf("creating %s in folder %s: %w", d, folder, err)
		}
	}
	// The sidecar first: the file's arrival is what the watcher acts on.
	if err := root.Rename(src+scanfolder.SidecarSuffix, clean+scanfolder.SidecarSuffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return wire.ScanFile{}, fmt.Errorf("moving the sidecar of %s back: %w", clean, err)
	}
	if err := root.Rename(src, clean); err != nil {
		return wire.ScanFile{}, fmt.Errorf("moving %s back into folder %s: %w", clean, folder, err)
	}
	_ = root.Remove(src + errorSuffix)
	return wire.ScanFile{Folder: folder, Path: clean, Size: info.Size(), Time: info.ModTime()}, nil
}

// httpChange names the http keys a reload found changed that need a
// restart (the listener, its TLS and the console are built at start-up);
// "" when none did. Console users change live (reloadWeb).
func httpChange(old, next configs.HTTP) string {
	old.ConsoleUsers, next.ConsoleUsers = nil, nil
	if reflect.DeepEqual(old, next) {
		return ""
	}
	var keys []string
	if old.Listen != next.Listen {
		keys = append(keys, "http.listen")
	}
	if old.TLS != next.TLS || old.CertFile != next.CertFile || old.KeyFile != next.KeyFile {
		keys = append(keys, "http.tls")
	}
	if len(keys) == 0 {
		keys = append(keys, "http (console or metrics_token)")
	}
	return strings.Join(keys, ", ")
}

// reloadWeb applies what a reload changes on the HTTP listener: the console
// users.
func (d *daemon) reloadWeb(p *plan) {
	if d.http != nil && d.http.ui != nil {
		d.http.ui.SetUsers(p.console.Users)
	}
}
