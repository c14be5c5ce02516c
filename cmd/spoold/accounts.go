package main

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/spoold/spoold/auth"
	"github.com/spoold/spoold/cmd/spoold/adminapi"
	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
	"github.com/spoold/spoold/configs"
	"github.com/spoold/spoold/delivery"
	"github.com/spoold/spoold/ingest/scanfolder"
)

// adminError gives an error from auth or delivery the admin API's sentinel so
// spoolctl sees a stable code, while keeping the original text.
type adminError struct {
	err  error
	kind error
}

func (e *adminError) Error() string        { return e.err.Error() }
func (e *adminError) Unwrap() error        { return e.err }
func (e *adminError) Is(target error) bool { return target == e.kind }

func toAdminError(err error) error {
	if err == nil {
		return nil
	}
	var kind error
	switch {
	case errors.Is(err, auth.ErrUnknownAccount):
		kind = adminapi.ErrUnknownAccount
	case errors.Is(err, auth.ErrNeedsReauth):
		kind = adminapi.ErrNeedsReauth
	case errors.Is(err, auth.ErrTransient), errors.Is(err, context.DeadlineExceeded):
		kind = adminapi.ErrUnavailable
	case errors.Is(err, auth.ErrMisconfigured), errors.Is(err, auth.ErrIdentityMismatch), errors.Is(err, auth.ErrLoginUnsupported):
		kind = adminapi.ErrInvalidArgument
	case errors.Is(err, auth.ErrLoginExpired):
		kind = adminapi.ErrNotFound
	default:
		return err
	}
	return &adminError{err: err, kind: kind}
}

// daemonAccounts implements adminapi.Accounts over the auth manager (OAuth
// health and logins) and the delivery engine (live state, test sends).
type daemonAccounts struct {
	mu     sync.RWMutex
	cfg    *configs.Config
	auth   *auth.Manager
	engine *delivery.Engine
	pause  *sharedPause // nil on the embedded spool
}

func (d *daemonAccounts) setConfig(c *configs.Config) {
	d.mu.Lock()
	d.cfg = c
	d.mu.Unlock()
}

func (d *daemonAccounts) config() *configs.Config {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.cfg
}

func (d *daemonAccounts) Accounts(ctx context.Context) ([]wire.AccountInfo, error) {
	cfg := d.config()
	live := map[string]delivery.AccountState{}
	for _, st := range d.engine.AccountStates() {
		live[st.Name] = st
	}
	out := make([]wire.AccountInfo, 0, len(cfg.Accounts))
	for _, a := range cfg.Accounts {
		info := wire.AccountInfo{
			Name:      a.Name,
			Transport: string(a.Transport),
			Provider:  string(a.Provider),
			Flow:      string(a.Flow),
			Mailbox:   a.Mailbox,
			Status:    string(auth.StatusOK),
		}
		if !a.IsOAuth() && a.Transport == configs.TransportSMTP {
			info.Provider, info.Flow = "password", "password"
			if a.Auth == configs.AuthNone {
				info.Provider, info.Flow = "relay", "none"
			}
		}
		if a.IsOAuth() {
			h, err := d.auth.Health(ctx, a.Name)
			if err != nil {
				return nil, toAdminError(err)
			}
			info.Status = string(h.Status)
			info.Reason = h.Reason
			info.Identity = h.Identity
			info.TokenExpiry = h.AccessTokenExpiry
			info.GrantedAt = h.GrantedAt
			info.LastRefresh = h.LastRefresh
			info.ClientSecretExpires = h.ClientSecretExpires
			info.Warnings = h.Warnings
		}
		if st, ok := live[a.Name]; ok {
			info.LastDelivery = st.LastDelivery
			if st.LastError != nil {
				info.LastError = st.LastError.Text
				info.LastErrorTime = st.LastError.Time
			}
			if st.HoldReason != "" && info.Reason == "" {
				info.Reason = st.HoldReason
			}
			if st.DailyRecipientLimit > 0 {
				info.RecipientsToday, info.DailyRecipientLimit = st.RecipientsToday, st.DailyRecipientLimit
			}
			info.FallbackVia = st.FallbackVia
			if !st.UpstreamDownSince.IsZero() {
				info.UpstreamDownSince, info.NextProbe = st.UpstreamDownSince, st.NextProbe
				// An auth problem needs the admin; an outage ends by itself.
				// A pending app-only account has not reached its token
				// endpoint yet; the outage is the news.
				if info.Status == string(auth.StatusOK) || info.Status == string(auth.StatusPending) {
					info.Status = delivery.StateUpstreamDown
					info.Reason = "upstream unreachable (" + st.UpstreamDownReason + "): messages wait without using " +
						"attempts and go as soon as a probe connects"
				}
			}
		}
		out = append(out, info)
	}
	return out, nil
}

func (d *daemonAccounts) oauthAccount(name string) error {
	a, ok := d.config().Account(name)
	if !ok {
		return &adminError{err: errors.New("account " + name + " is not configured"), kind: adminapi.ErrUnknownAccount}
	}
	if !a.IsOAuth() {
		return &adminError{err: errors.New("account " + name + " does not use OAuth2: there is nothing to log in to"), kind: adminapi.ErrInvalidArgument}
	}
	return nil
}

func (d *daemonAccounts) StartLogin(ctx context.Context, account, mode string) (wire.LoginStart, error) {
	if err := d.oauthAccount(account); err != nil {
		return wire.LoginStart{}, err
	}
	ls, err := d.auth.StartLogin(ctx, account, auth.LoginMode(mode))
	if err != nil {
		return wire.LoginStart{}, toAdminError(err)
	}
	out := wire.LoginStart{
		LoginID:         ls.ID,
		Account:         ls.Account,
		Mode:            string(ls.Mode),
		URL:             ls.AuthURL,
		UserCode:        ls.UserCode,
		VerificationURI: ls.VerificationURL,
		ExpiresAt:       ls.ExpiresAt,
	}
	if ls.Done {
		out.Message = "no interactive step is needed for this flow: a token was obtained"
	}
	return out, nil
}

func (d *daemonAccounts) info(ctx context.Context, account string) (wire.AccountInfo, error) {
	all, err := d.Accounts(ctx)
	if err != nil {
		return wire.AccountInfo{}, err
	}
	for _, a := range all {
		if a.Name == account {
			return a, nil
		}
	}
	return wire.AccountInfo{}, &adminError{err: errors.New("account " + account + " is not configured"), kind: adminapi.ErrUnknownAccount}
}

func (d *daemonAccounts) CompletePaste(ctx context.Context, loginID, redirectedURL string) (wire.AccountInfo, error) {
	h, err := d.auth.CompletePaste(ctx, loginID, redirectedURL)
	if err != nil {
		return wire.AccountInfo{}, toAdminError(err)
	}
	return d.info(ctx, h.Account)
}

func (d *daemonAccounts) WaitLogin(ctx context.Context, loginID string) (wire.AccountInfo, error) {
	h, err := d.auth.WaitLogin(ctx, loginID)
	if err != nil {
		return wire.AccountInfo{}, toAdminError(err)
	}
	return d.info(ctx, h.Account)
}

func (d *daemonAccounts) Logout(ctx context.Context, account string) error {
	if err := d.oauthAccount(account); err != nil {
		return err
	}
	return toAdminError(d.auth.Logout(ctx, account))
}

func (d *daemonAccounts) TestSend(ctx context.Context, account, to string) (wire.TestSendResult, error) {
	if _, ok := d.config().Account(account); !ok {
		return wire.TestSendResult{}, &adminError{err: errors.New("account " + account + " is not configured"), kind: adminapi.ErrUnknownAccount}
	}
	r, err := d.engine.TestSend(ctx, account, to)
	out := wire.TestSendResult{
		Account:    account,
		To:         to,
		Code:       r.Code,
		Enhanced:   r.Enhanced,
		Text:       r.Text,
		DurationMS: r.Duration.Milliseconds(),
	}
	return out, toAdminError(err)
}

// daemonInfo implements adminapi.Info.
type daemonInfo struct {
	d *daemon
}

func (i daemonInfo) Version() string { return version() }

func (i daemonInfo) Started() time.Time { return i.d.started }

func (i daemonInfo) Listeners() []wire.ListenerInfo { return i.d.listenerInfo() }

func (i daemonInfo) ScanFolders() []wire.FolderInfo {
	if i.d.scans == nil {
		return nil
	}
	var out []wire.FolderInfo
	for _, f := range i.d.scans.Folders() {
		out = append(out, folderInfo(f))
	}
	return out
}

func folderInfo(f scanfolder.FolderStatus) wire.FolderInfo {
	return wire.FolderInfo{Name: f.Name, Path: f.Path, Mode: f.Mode, Pending: f.Pending, LastScan: f.LastScan, LastError: f.LastError}
}

// SetDeliveryPaused implements adminapi.DeliveryControl: delivery stops
// claiming (in-flight sends finish) while ingest goes on accepting.
// On a shared spool it pauses every node (clusterpause.go).
func (d *daemonAccounts) SetDeliveryPaused(ctx context.Context, paused bool) error {
	if d.pause != nil {
		return d.pause.set(ctx, paused)
	}
	d.engine.Pause(paused)
	return nil
}

func (d *daemonAccounts) DeliveryPaused() bool { return d.engine.Paused() }
