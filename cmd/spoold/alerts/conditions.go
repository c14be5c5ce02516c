package alerts

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"time"

	"github.com/spoold/spoold/auth"
	"github.com/spoold/spoold/delivery"
	"github.com/spoold/spoold/ingest/scanfolder"
	"github.com/spoold/spoold/spool"
)

// Sources is what the alerter reads; a nil function is a source that is
// not there (no scan folders, no OAuth accounts).
type Sources struct {
	Health   func(ctx context.Context) []auth.Health // auth.Manager.AllHealth
	Accounts func() []delivery.AccountState          // delivery.Engine.AccountStates
	Paused   func() bool                             // delivery.Engine.Paused
	Folders  func() []scanfolder.FolderStatus        // scanfolder.Watcher.Folders
	// DiskFree returns the free bytes (for an unprivileged user) of the
	// file system holding dir; default statfs.
	DiskFree func(dir string) (uint64, error)
	DataDir  string
}

// Grant lifetimes spoold knows of: a Google app in "testing" publishing
// status loses its refresh token after 7 days; a Microsoft refresh token
// dies after 90 days unused.
const (
	googleTestingGrant = 7 * 24 * time.Hour
	microsoftIdleGrant = 90 * 24 * time.Hour
)

// maxFailedFiles bounds the walk of a scan folder's failed/ directory.
const maxFailedFiles = 1000

// evaluate runs every enabled check and returns the conditions active now,
// by key. A source that fails is logged and skipped: its conditions keep
// their state until it answers again (skip lists their kinds). Without
// shared (the node does not lead the alerts of a shared spool) only this
// node's own conditions are checked: its disk and its paused delivery.
func (a *Alerter) evaluate(ctx context.Context, now time.Time, shared bool) (map[string]finding, []string) {
	out := map[string]finding{}
	var skip []string
	add := func(f finding) { out[f.Key] = f }

	stats, err := a.queue.Stats(ctx)
	if err != nil {
		a.log.Warn("cannot read the queue counts", "err", err)
		skip = append(skip, KindQueueDepth, KindQueueAge)
	}
	a.localFindings(now, stats, add, &skip)
	if shared {
		a.sharedFindings(ctx, now, stats, err == nil, add, &skip)
	}
	return out, skip
}

// sharedFindings checks the conditions of the whole spool: accounts, the
// queue and the scan folders (mounted alike on every node).
func (a *Alerter) sharedFindings(ctx context.Context, now time.Time, stats map[spool.State]int, haveStats bool, add func(finding), skip *[]string) {
	o := a.opts
	out := map[string]finding{} // what this adds, for hasAccountFinding
	add0 := add
	add = func(f finding) { out[f.Key] = f; add0(f) }

	waiting, err := a.queue.WaitingByAccount(ctx)
	if err != nil {
		a.log.Warn("cannot count waiting messages", "err", err)
	}
	if a.src.Health != nil {
		for _, h := range a.src.Health(ctx) {
			a.accountFindings(h, waiting[h.Account], now, add)
		}
	}

	// Holds that delivery decides (the daily recipient budget, a reply that
	// says the account is blocked); a hold for an auth problem is already an
	// account alert above.
	if a.src.Accounts != nil {
		for _, st := range a.src.Accounts() {
			if st.HoldReason == "" || !st.HeldUntil.After(now) || hasAccountFinding(out, st.Name) {
				continue
			}
			add(finding{Key: KindAccountHeld + "/" + st.Name, Kind: KindAccountHeld, Severity: SeverityWarning, Account: st.Name,
				Title:   fmt.Sprintf("Account %s is held until %s", st.Name, st.HeldUntil.Format(time.RFC3339)),
				Text:    fmt.Sprintf("Delivery holds account %s: %s. %d messages wait; they keep their attempts and go when the hold ends.", st.Name, st.HoldReason, waiting[st.Name]),
				Fix:     "Run spoolctl accounts for the reason; a fallback account (accounts[].fallback) can carry the mail meanwhile.",
				Waiting: waiting[st.Name]})
		}
	}

	if haveStats {
		total := stats[spool.StateQueued] + stats[spool.StateDeferred] + stats[spool.StateActive]
		if n := *o.QueueDepth; n > 0 && total > n {
			add(finding{Key: KindQueueDepth, Kind: KindQueueDepth, Severity: SeverityWarning,
				Title:   fmt.Sprintf("%d messages wait in the queue", total),
				Text:    fmt.Sprintf("%d messages wait to be sent, more than alerts.queue_depth (%d).", total, n),
				Fix:     "Run spoolctl status and spoolctl accounts to see which account is stuck and why.",
				Waiting: total})
		}
		if age := *o.QueueAge; age > 0 && total > 0 {
			if oldest, ok, err := a.oldestWaiting(ctx); err != nil {
				a.log.Warn("cannot find the oldest waiting message", "err", err)
				*skip = append(*skip, KindQueueAge)
			} else if ok && now.Sub(oldest.Created) > age {
				f := finding{Key: KindQueueAge, Kind: KindQueueAge, Severity: SeverityWarning,
					Title: fmt.Sprintf("A message has waited %s", roundAge(now.Sub(oldest.Created))),
					Text: fmt.Sprintf("The oldest waiting message (%s, account %s, queued %s) is older than alerts.queue_age (%s); %d messages wait.",
						oldest.ID, oldest.Account, oldest.Created.Format(time.RFC3339), age, total),
					Fix:     "Run spoolctl show " + oldest.ID + " for its last error, and spoolctl accounts for the account's state.",
					Account: oldest.Account, Waiting: total, Since: oldest.Created.Add(age)}
				if oldest.LastError != nil && oldest.LastError.Text != "" {
					f.Text += " Its last error: " + oldest.LastError.Text
				}
				add(f)
			}
		}
	}

	if *o.ScanFailures && a.src.Folders != nil {
		for _, fs := range a.src.Folders() {
			n := countFailed(filepath.Join(fs.Path, scanfolder.FailedDir))
			if n == 0 {
				continue
			}
			f := finding{Key: KindScanFailures + "/" + fs.Name, Kind: KindScanFailures, Severity: SeverityWarning, Folder: fs.Name,
				Title: fmt.Sprintf("%s scan file(s) could not be sent from %s", countText(n), fs.Name),
				Text:  fmt.Sprintf("%s file(s) are in %s; each has a .error.txt next to it saying why.", countText(n), filepath.Join(fs.Path, scanfolder.FailedDir)),
				Fix:   "Read the .error.txt files, fix the cause, then move each file back into the scan folder (or delete it)."}
			if fs.LastError != "" {
				f.Text += " The folder's last error: " + fs.LastError
			}
			add(f)
		}
	}
}

// localFindings checks this node's own conditions: the free space of its
// data directory and its paused delivery (a pause is per node).
func (a *Alerter) localFindings(now time.Time, stats map[spool.State]int, add func(finding), skip *[]string) {
	o := a.opts
	if min := *o.DiskFree; min > 0 && a.src.DataDir != "" {
		free, err := a.diskFree(a.src.DataDir)
		if err != nil {
			a.log.Warn("cannot read the free disk space", "dir", a.src.DataDir, "err", err)
			*skip = append(*skip, KindDiskFree)
		} else if free < uint64(min) {
			add(finding{Key: a.localKey(KindDiskFree), Kind: KindDiskFree, Severity: SeverityCritical,
				Title: fmt.Sprintf("Only %s free for the spool%s", humanBytes(free), a.onNode()),
				Text: fmt.Sprintf("The file system of the data directory %s%s has %s free, less than alerts.disk_free (%s). When it is full, spoold refuses new mail (452 4.3.1) and scans stay in the folder.",
					a.src.DataDir, a.onNode(), humanBytes(free), humanBytes(uint64(min))),
				Fix: "Free space on that file system (spoolctl purge dead removes dead letters), or move data_dir to a larger one."})
		}
	}

	if a.src.Paused != nil {
		if a.src.Paused() {
			if a.pausedSince.IsZero() {
				a.pausedSince = now
			}
			if d := *o.PausedFor; d > 0 && now.Sub(a.pausedSince) >= d {
				total := stats[spool.StateQueued] + stats[spool.StateDeferred]
				add(finding{Key: a.localKey(KindPaused), Kind: KindPaused, Severity: SeverityWarning,
					Title:   "Delivery is paused" + a.onNode(),
					Text:    fmt.Sprintf("Delivery"+a.onNode()+" has been paused since %s (longer than alerts.paused_for, %s); mail is accepted and queued but not sent. %d messages wait.", a.pausedSince.Format(time.RFC3339), d, total),
					Fix:     "Run spoolctl resume" + a.onNode() + " when the maintenance is over (and remove delivery.paused from the config if it is set there).",
					Waiting: total, Since: a.pausedSince})
			}
		} else {
			a.pausedSince = time.Time{}
		}
	}
}

// accountFindings turns one account's health into its conditions.
func (a *Alerter) accountFindings(h auth.Health, waiting int, now time.Time, add func(finding)) {
	who := h.Account
	if h.Mailbox != "" {
		who += " (" + h.Mailbox + ")"
	}
	waits := fmt.Sprintf(" %d messages for it wait.", waiting)
	base := finding{Account: h.Account, Waiting: waiting, Severity: SeverityCritical}
	switch h.Status {
	case auth.StatusNeedsReauth:
		f := base
		f.Key, f.Kind = KindNeedsReauth+"/"+h.Account, KindNeedsReauth
		f.Title = "Account " + h.Account + " needs to sign in again"
		f.Text = "Account " + who + " has no valid grant: " + sentence(h.Reason) + waits
		f.Fix = "Run: spoolctl auth login " + h.Account + " (or open the web console's account page) and sign in"
		if h.Mailbox != "" {
			f.Fix += " as " + h.Mailbox
		}
		f.Fix += ". The waiting messages are sent as soon as it works."
		add(f)
		return // expiry warnings are moot without a grant
	case auth.StatusMisconfigured:
		f := base
		f.Key, f.Kind = KindMisconfigured+"/"+h.Account, KindMisconfigured
		f.Title = "Account " + h.Account + " is misconfigured"
		f.Text = "Account " + who + " cannot get tokens because of its settings: " + sentence(h.Reason) + waits
		f.Fix = "Fix what the reason names (app registration, secret, tenant or the config), then run: spoolctl reload"
		add(f)
		return
	case auth.StatusRefreshFailing:
		f := base
		f.Key, f.Kind = KindRefreshFailing+"/"+h.Account, KindRefreshFailing
		f.Severity = SeverityWarning
		f.Title = "The token endpoint of account " + h.Account + " keeps failing"
		f.Text = "spoold cannot reach or use the token endpoint of account " + who + ": " + sentence(h.Reason) + " It keeps retrying." + waits
		f.Fix = "Check the network, DNS and proxy (HTTPS_PROXY) from this host to the provider, and the provider's status page."
		if !h.LastRefresh.IsZero() {
			f.Text += " Last successful refresh: " + h.LastRefresh.Format(time.RFC3339) + "."
		}
		add(f)
	}
	if w := *a.opts.SecretExpiryWarning; w > 0 && !h.ClientSecretExpires.IsZero() {
		if left := h.ClientSecretExpires.Sub(now); left <= w {
			f := base
			f.Key, f.Kind, f.Severity = KindSecretExpiring+"/"+h.Account, KindSecretExpiring, SeverityWarning
			when := "expires on " + h.ClientSecretExpires.Format(time.DateOnly)
			if left <= 0 {
				when, f.Severity = "expired on "+h.ClientSecretExpires.Format(time.DateOnly), SeverityCritical
			}
			f.Title = "The client secret of account " + h.Account + " " + when
			f.Text = "The client secret of account " + who + " " + when + " (accounts[].client_secret_expires); after that the token endpoint refuses it and mail for this account waits."
			f.Fix = "Create a new client secret in the app registration, put it in client_secret (or its file), update client_secret_expires, then run: spoolctl reload"
			f.Since = h.ClientSecretExpires.Add(-w)
			add(f)
		}
	}
	w := *a.opts.GrantExpiryWarning
	if w <= 0 || !auth.Flow(h.Flow).Delegated() {
		return
	}
	switch auth.Provider(h.Provider) {
	case auth.ProviderGoogle:
		if h.GrantedAt.IsZero() {
			return
		}
		end := h.GrantedAt.Add(googleTestingGrant)
		if end.Sub(now) <= w {
			f := base
			f.Key, f.Kind, f.Severity = KindGrantExpiring+"/"+h.Account, KindGrantExpiring, SeverityWarning
			f.Title = "The Google grant of account " + h.Account + " may expire on " + end.Format(time.DateOnly)
			f.Text = "Account " + who + " signed in on " + h.GrantedAt.Format(time.DateOnly) + ". If its OAuth app is in \"testing\" publishing status, Google revokes the grant 7 days after sign-in."
			f.Fix = "Publish the OAuth app (Google Cloud console, OAuth consent screen, Publish app), then run: spoolctl auth login " + h.Account
			f.Since = end.Add(-w)
			add(f)
		}
	case auth.ProviderMicrosoft, auth.ProviderMicrosoftUSGov:
		last := h.LastRefresh
		if last.IsZero() {
			last = h.GrantedAt
		}
		if last.IsZero() {
			return
		}
		end := last.Add(microsoftIdleGrant)
		if end.Sub(now) <= w {
			f := base
			f.Key, f.Kind, f.Severity = KindGrantExpiring+"/"+h.Account, KindGrantExpiring, SeverityWarning
			f.Title = "The Microsoft grant of account " + h.Account + " expires on " + end.Format(time.DateOnly) + " unless used"
			f.Text = "Account " + who + " last refreshed its token on " + last.Format(time.DateOnly) + "; Microsoft refresh tokens die after 90 days unused, and the keep-alive refresh has not run."
			f.Fix = "Check that spoold can reach the token endpoint (spoolctl accounts shows the last error); or sign in again: spoolctl auth login " + h.Account
			f.Since = end.Add(-w)
			add(f)
		}
	}
}

// oldestWaiting returns the waiting message created first: each state
// index walks in ID order, and IDs sort by creation time.
func (a *Alerter) oldestWaiting(ctx context.Context) (*spool.Message, bool, error) {
	var oldest *spool.Message
	for _, st := range []spool.State{spool.StateQueued, spool.StateDeferred, spool.StateActive} {
		p, err := a.queue.List(ctx, spool.Filter{State: st}, "", 1)
		if err != nil {
			return nil, false, err
		}
		if len(p.Messages) > 0 && (oldest == nil || p.Messages[0].Created.Before(oldest.Created)) {
			oldest = p.Messages[0]
		}
	}
	return oldest, oldest != nil, nil
}

// countFailed counts the files in a scan folder's failed/ tree (not their
// .error.txt companions), up to maxFailedFiles.
func countFailed(dir string) int {
	n := 0
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // gone or unreadable: nothing to count there
		}
		if d.Type().IsRegular() && !strings.HasSuffix(d.Name(), ".error.txt") && !strings.HasPrefix(d.Name(), ".") {
			n++
		}
		if n >= maxFailedFiles {
			return filepath.SkipAll
		}
		return nil
	})
	return n
}

func countText(n int) string {
	if n >= maxFailedFiles {
		return fmt.Sprintf("%d or more", n)
	}
	return fmt.Sprint(n)
}

// sentence ends s with a period.
func sentence(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return "no reason given."
	}
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}

func roundAge(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%d days", int(d/(24*time.Hour)))
	case d >= time.Hour:
		return fmt.Sprintf("%d hours", int(d/time.Hour))
	}
	return fmt.Sprintf("%d minutes", int(d/time.Minute))
}

func humanBytes(n uint64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.1f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	}
	return fmt.Sprintf("%d bytes", n)
}

// hasAccountFinding reports whether an account condition (auth's) is already
// raised for account, so one cause is not alerted twice.
func hasAccountFinding(out map[string]finding, account string) bool {
	for _, f := range out {
		if f.Account == account && strings.HasPrefix(f.Kind, "account_") {
			return true
		}
	}
	return false
}
