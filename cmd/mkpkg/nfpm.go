package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	"github.com/goreleaser/nfpm/v2/files"
	_ "github.com/goreleaser/nfpm/v2/rpm" // registers the rpm packager
)

// pkgFile is one entry of the packages' file list. The install test checks
// the installed system against this same list (owners, modes).
type pkgFile struct {
	Src      string // path on the build machine ("" for directories)
	Dst      string
	Type     string // files.TypeFile, TypeDir, TypeConfigNoReplace
	Owner    string
	Group    string
	Mode     os.FileMode
	Packager string // "" both, or only "deb" / "rpm"
}

// packageFiles is what the spoold package installs for arch. bin holds
// spoold and spoolctl for arch; share is writeShare's output.
func packageFiles(repo, bin, share string) ([]pkgFile, error) {
	l := []pkgFile{
		{Src: filepath.Join(bin, "spoold"), Dst: "/usr/bin/spoold", Mode: 0o755},
		{Src: filepath.Join(bin, "spoolctl"), Dst: "/usr/bin/spoolctl", Mode: 0o755},
		{Src: filepath.Join(share, "systemd", "spoold.service"), Dst: "/usr/lib/systemd/system/spoold.service", Mode: 0o644},
		// The configuration may hold secrets: readable by the daemon's group,
		// writable by root only. The package manager keeps the admin's copy.
		{Dst: "/etc/spoold", Type: files.TypeDir, Group: "spoold", Mode: 0o750},
		{Src: filepath.Join(repo, "configs", "packaging", "spoold.yaml"), Dst: "/etc/spoold/spoold.yaml",
			Type: files.TypeConfigNoReplace, Group: "spoold", Mode: 0o640},
		// The unit's StateDirectory: the queue, tokens and delivered mail.
		{Dst: "/var/lib/spoold", Type: files.TypeDir, Owner: "spoold", Group: "spoold", Mode: 0o700},
		// The key sealing the stored tokens (secrets.key), outside the data
		// directory so a copy of that holds no key; the unit's second
		// StateDirectory, made here too for a start without systemd.
		{Dst: "/var/lib/spoold-keys", Type: files.TypeDir, Owner: "spoold", Group: "spoold", Mode: 0o700},
		// The packaged config's scan folder (it must exist: spoold does not
		// create configured folders, which may be unmounted shares).
		{Dst: "/var/lib/spoold/scans", Type: files.TypeDir, Owner: "spoold", Group: "spoold", Mode: 0o750},
		{Src: filepath.Join(share, "completions", "spoolctl.bash"), Dst: "/usr/share/bash-completion/completions/spoolctl", Mode: 0o644},
		{Src: filepath.Join(share, "completions", "_spoolctl"), Dst: "/usr/share/zsh/vendor-completions/_spoolctl", Mode: 0o644, Packager: "deb"},
		{Src: filepath.Join(share, "completions", "_spoolctl"), Dst: "/usr/share/zsh/site-functions/_spoolctl", Mode: 0o644, Packager: "rpm"},
		{Src: filepath.Join(share, "completions", "spoolctl.fish"), Dst: "/usr/share/fish/vendor_completions.d/spoolctl.fish", Mode: 0o644},
	}
	pages, err := filepath.Glob(filepath.Join(share, "man8", "*.8.gz"))
	if err != nil {
		return nil, err
	}
	if len(pages) < 2 {
		return nil, fmt.Errorf("man pages missing in %s", share)
	}
	for _, p := range pages {
		l = append(l, pkgFile{Src: p, Dst: "/usr/share/man/man8/" + filepath.Base(p), Mode: 0o644})
	}
	// Example configurations; default.yaml is the embedded quick start and
	// spoold -print-default-config prints it.
	examples, err := filepath.Glob(filepath.Join(repo, "configs", "*.yaml"))
	if err != nil {
		return nil, err
	}
	for _, p := range examples {
		if filepath.Base(p) == "default.yaml" {
			continue
		}
		l = append(l, pkgFile{Src: p, Dst: "/usr/share/doc/spoold/examples/" + filepath.Base(p), Mode: 0o644})
	}
	for i := range l {
		if l[i].Type == "" {
			l[i].Type = files.TypeFile
		}
		if l[i].Owner == "" {
			l[i].Owner = "root"
		}
		if l[i].Group == "" {
			l[i].Group = "root"
		}
	}
	sort.Slice(l, func(i, j int) bool { return l[i].Dst < l[j].Dst })
	return l, nil
}

// packageInfo is the nfpm description of the spoold package for one format
// and architecture.
func packageInfo(o options, format, arch string, list []pkgFile) *nfpm.Info {
	scripts := filepath.Join(o.Repo, "configs", "packaging")
	info := &nfpm.Info{
		Name:        "spoold",
		Arch:        arch,
		Platform:    "linux",
		Version:     o.Version,
		Release:     "1",
		Section:     "mail",
		Priority:    "optional",
		Maintainer:  "spoold developers <spoold@localhost>",
		Vendor:      "spoold",
		Homepage:    "https://github.com/spoold/spoold",
		Description: "durable mail spooler for office devices\nspoold accepts mail from printers and scanners (SMTP submission and a scan\nhot folder), stores every message durably and delivers it upstream\n(Microsoft 365, Gmail or an SMTP relay) with OAuth2 tokens it refreshes\nitself. spoolctl inspects and repairs the queue.",
		MTime:       o.Date,
	}
	info.Umask = 0o022
	for _, f := range list {
		if f.Packager != "" && f.Packager != format {
			continue
		}
		info.Contents = append(info.Contents, &files.Content{
			Source: f.Src, Destination: f.Dst, Type: f.Type,
			FileInfo: &files.ContentFileInfo{Owner: f.Owner, Group: f.Group, Mode: f.Mode, MTime: o.Date},
		})
	}
	switch format {
	case "deb":
		info.Scripts = nfpm.Scripts{
			PreInstall:  filepath.Join(scripts, "deb", "preinst"),
			PostInstall: filepath.Join(scripts, "deb", "postinst"),
			PreRemove:   filepath.Join(scripts, "deb", "prerm"),
			PostRemove:  filepath.Join(scripts, "deb", "postrm"),
		}
		info.Deb.Compression = "xz"
		// preinst creates the spoold user with useradd/groupadd, which are
		// not Essential: they must be there before unpacking.
		info.Deb.Predepends = []string{"passwd"}
	case "rpm":
		info.Scripts = nfpm.Scripts{
			PreInstall:  filepath.Join(scripts, "rpm", "pre"),
			PostInstall: filepath.Join(scripts, "rpm", "post"),
			PreRemove:   filepath.Join(scripts, "rpm", "preun"),
			PostRemove:  filepath.Join(scripts, "rpm", "postun"),
		}
		info.Depends = []string{"shadow-utils"} // useradd/groupadd in %pre
		info.RPM.Summary = "durable mail spooler for office devices"
		info.RPM.Group = "System Environment/Daemons"
		info.RPM.BuildHost = "spoold"
		info.License = "unspecified"
	}
	return nfpm.WithDefaults(info)
}

// writePackage writes one .deb or .rpm into o.Out and returns its path.
func writePackage(o options, format, arch, bin, share string) (string, error) {
	list, err := packageFiles(o.Repo, bin, share)
	if err != nil {
		return "", err
	}
	info := packageInfo(o, format, arch, list)
	if err := nfpm.Validate(info); err != nil {
		return "", err
	}
	pkg, err := nfpm.Get(format)
	if err != nil {
		return "", err
	}
	name := pkg.ConventionalFileName(info)
	if strings.ContainsAny(name, "/\\") {
		return "", fmt.Errorf("odd package file name %q", name)
	}
	dst := filepath.Join(o.Out, name)
	f, err := os.Create(dst)
	if err != nil {
		return "", err
	}
	info.Target = dst
	if err := pkg.Package(info, f); err != nil {
		f.Close()
		os.Remove(dst)
		return "", err
	}
	return dst, f.Close()
}
