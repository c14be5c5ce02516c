package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spoold/spoold/auth"
	"github.com/spoold/spoold/auth/seal"
	"github.com/spoold/spoold/cmd/spoold/adminapi"
	"github.com/spoold/spoold/cmd/spoold/alerts"
	"github.com/spoold/spoold/cmd/spoold/console"
	"github.com/spoold/spoold/configs"
	"github.com/spoold/spoold/configs/field"
	"github.com/spoold/spoold/delivery"
	"github.com/spoold/spoold/ingest/scanfolder"
	"github.com/spoold/spoold/ingest/smtpd"
	"github.com/spoold/spoold/spool"
)

// plan is what the daemon runs: the decoded config turned, once, into each
// subsystem's options with that subsystem's own defaults applied. -check
// validates a plan, start-up and reload run the plan that was validated, and
// -print-config prints it, so the three can never disagree.
type plan struct {
	cfg       *configs.Config
	listeners []smtpd.ListenerConfig
	routes    smtpd.Routes
	folders   []scanfolder.FolderConfig
	oauth     []auth.AccountConfig // OAuth accounts only: others have no tokens
	accounts  []delivery.AccountConfig
	spool     spool.Options    // the config's part; the daemon adds the rest
	backend   spoolBackendPlan // bbolt, or the PostgreSQL spool's options
	engine    delivery.Options // likewise
	alerts    alerts.Options
	console   console.Options // the http section's web console, TLS and metrics token
	secrets   seal.Options
	access    adminapi.Access
	// warnings are facts the daemon runs with but an admin should hear
	// about (-check prints them, start-up logs them).
	warnings []string
}

// tlsDir is where smtpd keeps a self-signed certificate it creates.
func (p *plan) tlsDir() string { return filepath.Join(p.cfg.DataDir, "tls") }

// defaultRedirectPath is the OAuth2 callback on the HTTP listener.
const defaultRedirectPath = "/oauth2/callback"

// buildPlan converts cfg and validates every part with its owner's Validate.
// Problems carry the config's dotted keys, so configs can put file:line on
// them; a plan with problems must not run.
func buildPlan(cfg *configs.Config) (*plan, field.Problems) {
	var ps field.Problems
	p := &plan{cfg: cfg}

	// auth first: where both judge a key (an OAuth account's mailbox),
	// auth's reason says more, and configs keeps one problem per key.
	oauthIdx := []int{} // config index of each OAuth account
	for i, a := range cfg.Accounts {
		ps.Merge(field.Index("accounts", i), accountCoherence(a))
		ps.Merge(field.Index("accounts", i), graphCoherence(a))
		if !a.IsOAuth() {
			continue
		}
		p.oauth = append(p.oauth, authAccount(a, cfg.HTTP).WithDefaults())
		oauthIdx = append(oauthIdx, i)
	}
	// auth numbers its accounts among the OAuth ones; put its problems back
	// under the account's index in the file.
	var authPs field.Problems
	authPs.MergeErr("", auth.ValidateAccounts(p.oauth))
	for _, pr := range authPs {
		ps.Add(reindex("accounts", pr.Key, oauthIdx), "%s", pr.Reason)
	}
	for _, a := range cfg.Accounts {
		p.accounts = append(p.accounts, deliveryAccount(a, cfg.DataDir).WithDefaults())
	}
	ps.MergeErr("accounts", delivery.ValidateAccounts(p.accounts))

	p.spool = spool.Options{
		LockTimeout:        cfg.Spool.LockTimeout,
		LeaseDuration:      cfg.Spool.Lease,
		DeliveredRetention: cfg.Spool.DeliveredRetention,
	}.WithDefaults()
	ps = append(ps, planSpoolBackend(cfg, p)...)
	p.engine = delivery.Options{
		Workers:         cfg.Delivery.Workers,
		ShutdownTimeout: cfg.Delivery.ShutdownTimeout,
		Outage:          outagePolicy(cfg),
		LeaseDuration:   p.spool.LeaseDuration, // one lease: the spool's
	}.WithDefaults()
	ps.MergeErr("delivery", p.engine.Validate())

	p.routes = smtpRoutes(cfg, p.accounts)
	for _, l := range cfg.SMTPListeners {
		p.listeners = append(p.listeners, smtpListener(l).WithDefaults())
	}
	ps.MergeErr("smtp_listeners", smtpd.ValidateListeners(p.listeners, p.tlsDir()))

	for _, f := range cfg.ScanFolders {
		fc := scanFolder(f, cfg.Routes.Default)
		if a := findAccount(p.accounts, fc.Account); a != nil {
			fc.MaxMessageSize = a.MaxMessageSize
		}
		p.folders = append(p.folders, fc.WithDefaults())
	}
	ps.MergeErr("scan_folders", scanfolder.ValidateFolders(p.folders))
	p.alerts = alertOptions(cfg.Alerts).WithDefaults()
	ps.Merge("alerts", p.alerts.Validate())
	p.console = consoleOptions(cfg.HTTP).WithDefaults()
	ps.Merge("http", p.console.Validate())
	p.secrets = seal.Options{Key: cfg.Secrets.Key, PreviousKeys: cfg.Secrets.PreviousKeys}.WithDefaults(cfg.DataDir)
	ps.Merge("secrets", p.secrets.Validate())
	p.access = adminapi.Access{SocketGroup: cfg.Admin.Group, ReadGroup: cfg.Admin.ReadGroup, AdminGroup: cfg.Admin.AdminGroup, AuditRetention: cfg.Admin.AuditRetention}.WithDefaults()
	ps.Merge("admin", p.access.Validate())
	p.warnings = expiredSecrets(cfg, time.Now())
	return p, ps
}

// expiredSecrets warns about client_secret_expires dates that have passed:
// the token endpoint will refuse the secret, but the admin may have renewed
// it and not the date, so it does not stop the daemon.
func expiredSecrets(cfg *configs.Config, now time.Time) []string {
	var out []string
	for i, a := range cfg.Accounts {
		if !a.ClientSecretExpires.IsZero() && a.ClientSecretExpires.Before(now) {
			out = append(out, fmt.Sprintf("%s.client_secret_expires: %s has passed: the client secret of account %s has expired; create a new one, then update client_secret and this date",
				field.Index("accounts", i), a.ClientSecretExpires.Format(time.DateOnly), a.Name))
		}
	}
	return out
}

// planChecker is the configs.Checker that keeps the plan it built, so the
// caller runs exactly what was validated.
func planChecker(out **plan) configs.Checker {
	return func(c *configs.Config) field.Problems {
		p, ps := buildPlan(c)
		*out = p
		return ps
	}
}

// startChecker is planChecker plus what start-up finds on this machine: a
// configured scan folder must exist (spoold creates only the embedded
// default's, since a configured one that is missing is more likely an
// unmounted share, which creating it would hide).
func startChecker(out **plan) configs.Checker {
	check := planChecker(out)
	return func(c *configs.Config) field.Problems {
		ps := check(c)
		for i, f := range (*out).folders {
			key := field.Index("scan_folders", i) + ".path"
			switch info, err := os.Stat(f.Path); {
			case errors.Is(err, fs.ErrNotExist):
				ps.Add(key, "%s does not exist: create it and give the spoold user access, or fix the path (spoold does not create a configured folder: a missing one is often an unmounted share)", f.Path)
			case err != nil:
				ps.Add(key, "%v", err)
			case !info.IsDir():
				ps.Add(key, "%s is not a directory", f.Path)
			}
		}
		return ps
	}
}

// loadPlan reads the config at path ("" = the embedded default) and returns
// its validated plan, or a *configs.Problems with file:line for every problem.
func loadPlan(path string) (*plan, error) {
	var p *plan
	var err error
	if path == "" {
		_, err = configs.LoadDefault(planChecker(&p))
	} else {
		_, err = configs.Load(path, startChecker(&p))
	}
	if err != nil {
		return nil, err
	}
	return p, nil
}

// reindex turns "[k].key" (the k-th of a subset) into "list[idx[k]].key".
func reindex(list, key string, idx []int) string {
	if rest, ok := strings.CutPrefix(key, "["); ok {
		if n, tail, ok := strings.Cut(rest, "]"); ok {
			if k, err := strconv.Atoi(n); err == nil && k >= 0 && k < len(idx) {
				return field.Index(list, idx[k]) + tail
			}
		}
	}
	return field.Join(list, key)
}

func findAccount(as []delivery.AccountConfig, name string) *delivery.AccountConfig {
	for i := range as {
		if as[i].Name == name {
			return &as[i]
		}
	}
	return nil
}

// defaultRedirect is http://localhost:<http.listen port>/oauth2/callback
// (https with http.tls): the callback is served by the daemon's HTTP
// listener, so its default follows that listener.
func defaultRedirect(h configs.HTTP) string {
	port := "8925"
	if _, pt, err := net.SplitHostPort(h.Listen); err == nil && pt != "" && pt != "0" {
		port = pt
	}
	scheme := "http"
	if h.TLS {
		scheme = "https"
	}
	return scheme + "://localhost:" + port + defaultRedirectPath
}

// accountCoherence checks what joins an account's auth and delivery halves:
// neither subsystem sees both.
func accountCoherence(a configs.Account) field.Problems {
	var ps field.Problems
	if a.Transport == configs.TransportFile {
		if a.Provider != configs.ProviderNone {
			ps.Add("provider", "provider is only used with transport smtp")
		}
		if a.Host != "" {
			ps.Add("host", "host is only used with transport smtp")
		}
		return ps
	}
	if a.Dir != "" {
		ps.Add("dir", "dir is only used with transport file")
	}
	switch {
	case a.Provider == configs.ProviderNone && a.Auth == configs.AuthXOAuth2:
		ps.Add("auth", "auth xoauth2 needs a provider (microsoft, microsoft-usgov, google or generic)")
	case a.Provider == configs.ProviderNone && a.Flow != "":
		ps.Add("flow", "flow needs a provider")
	case a.Provider != configs.ProviderNone && a.Auth != "" && a.Auth != configs.AuthXOAuth2:
		ps.Add("auth", "provider %s authenticates with xoauth2, not %s", a.Provider, a.Auth)
	}
	return ps
}
