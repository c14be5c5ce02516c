package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/spoold/spoold/configs/secret"
)

// Store is what auth needs from the spool's account store (spool.Spool
// satisfies it). AccountPut must be durable when it returns.
type Store interface {
	AccountGet(ctx context.Context, account, key string) (value []byte, ok bool, err error)
	AccountPut(ctx context.Context, account, key string, value []byte) error
	AccountDelete(ctx context.Context, account, key string) error
}

// Keys of the per-account records auth keeps in the Store.
const (
	TokenKey  = "auth.token"  // the grant: one record per account
	HealthKey = "auth.health" // the last known health: survives restarts, readable without the config
)

// Status is an account's health.
type Status string

const (
	// StatusOK: tokens can be obtained.
	StatusOK Status = "ok"
	// StatusNeedsReauth: the grant is gone or never existed; run `spoolctl auth login`.
	StatusNeedsReauth Status = "needs_reauth"
	// StatusMisconfigured: the app registration, secret or tenant is wrong; Reason says what to fix.
	StatusMisconfigured Status = "misconfigured"
	// StatusRefreshFailing: the token endpoint keeps failing transiently; retried with backoff.
	StatusRefreshFailing Status = "refresh_failing"
	// StatusPending: an app-only account (client_credentials,
	// service_account) has not obtained a token with its current settings
	// yet, so nothing says they work. Token calls go ahead (the first one
	// decides: ok or misconfigured); `spoolctl auth login` tries at once. It
	// is derived, never stored as the status.
	StatusPending Status = "pending"
)

// statuses lists every status (metrics export one gauge per status).
var statuses = []Status{StatusOK, StatusNeedsReauth, StatusMisconfigured, StatusRefreshFailing, StatusPending}

// Health is an account's state for status, metrics and the admin API.
type Health struct {
	Account  string `json:"account"`
	Provider string `json:"provider"`
	Flow     string `json:"flow"`
	Mailbox  string `json:"mailbox"`
	Status   Status `json:"status"`
	// Reason says what broke and how to fix it (empty when ok).
	Reason              string        `json:"reason,omitempty"`
	Identity            string        `json:"identity,omitempty"` // who signed in (from the ID token)
	LastRefresh         time.Time     `json:"last_refresh,omitzero"`
	AccessTokenExpiry   time.Time     `json:"access_token_expiry,omitzero"`
	GrantedAt           time.Time     `json:"granted_at,omitzero"`
	GrantAge            time.Duration `json:"grant_age,omitempty"`
	ClientSecretExpires time.Time     `json:"client_secret_expires,omitzero"`
	Warnings            []string      `json:"warnings,omitempty"`
}

// tokenRecord is the persisted grant. Token fields are Secrets so the record
// can be logged or printed safely; storedToken is the on-disk form.
type tokenRecord struct {
	RefreshToken secret.Secret
	AccessToken  secret.Secret
	TokenType    string
	Expiry       time.Time
	GrantedAt    time.Time
	Identity     string
	Flow         Flow
	ClientID     string
	Rotations    int
	// ConfigHash fingerprints the account settings the access token was
	// obtained with: an app-only token proves those settings work, and no
	// others (a changed secret is untested until a token is obtained with it).
	ConfigHash string
}

func (t *tokenRecord) LogValue() slog.Value {
	return slog.GroupValue(slog.Time("expiry", t.Expiry), slog.Time("granted_at", t.GrantedAt),
		slog.String("identity", t.Identity), slog.Bool("has_refresh_token", t.RefreshToken != ""))
}

type storedToken struct {
	V            int       `json:"v"`
	RefreshToken string    `json:"refresh_token,omitempty"`
	AccessToken  string    `json:"access_token,omitempty"`
	TokenType    string    `json:"token_type,omitempty"`
	Expiry       time.Time `json:"expiry,omitzero"`
	GrantedAt    time.Time `json:"granted_at,omitzero"`
	Identity     string    `json:"identity,omitempty"`
	Flow         Flow      `json:"flow,omitempty"`
	ClientID     string    `json:"client_id,omitempty"`
	Rotations    int       `json:"rotations,omitempty"`
	ConfigHash   string    `json:"config_hash,omitempty"`
}

func (t *tokenRecord) marshal() ([]byte, error) {
	return json.Marshal(storedToken{V: 1, RefreshToken: t.RefreshToken.Reveal(), AccessToken: t.AccessToken.Reveal(),
		TokenType: t.TokenType, Expiry: t.Expiry, GrantedAt: t.GrantedAt, Identity: t.Identity, Flow: t.Flow,
		ClientID: t.ClientID, Rotations: t.Rotations, ConfigHash: t.ConfigHash})
}

func unmarshalToken(b []byte) (*tokenRecord, error) {
	var s storedToken
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("token record is corrupt (%d bytes)", len(b)) // never echo it
	}
	if s.V != 1 {
		return nil, fmt.Errorf("token record has unknown version %d", s.V)
	}
	return &tokenRecord{RefreshToken: secret.Secret(s.RefreshToken), AccessToken: secret.Secret(s.AccessToken), TokenType: s.TokenType,
		Expiry: s.Expiry, GrantedAt: s.GrantedAt, Identity: s.Identity, Flow: s.Flow, ClientID: s.ClientID, Rotations: s.Rotations, ConfigHash: s.ConfigHash}, nil
}

// healthRecord is the persisted health. It repeats the account's settings
// and the grant's dates so that the record explains itself to a reader of
// the spool that lacks the config; the Manager reads back only the status
// fields and ConfigHash.
type healthRecord struct {
	V           int       `json:"v"`
	Status      Status    `json:"status"`
	Reason      string    `json:"reason,omitempty"`
	LastRefresh time.Time `json:"last_refresh,omitzero"`
	LastError   time.Time `json:"last_error,omitzero"`
	Failures    int       `json:"failures,omitempty"`
	// Copies for readers without the config.
	Provider  string    `json:"provider,omitempty"`
	Flow      string    `json:"flow,omitempty"`
	Mailbox   string    `json:"mailbox,omitempty"`
	Identity  string    `json:"identity,omitempty"`
	Expiry    time.Time `json:"access_token_expiry,omitzero"`
	GrantedAt time.Time `json:"granted_at,omitzero"`
	Updated   time.Time `json:"updated,omitzero"`
	// ConfigHash fingerprints the account config the status was decided
	// under: a misconfigured status is retried once the config changed.
	ConfigHash string `json:"config_hash,omitempty"`
	// Mismatch is why the grant does not fit the config it was saved under
	// (grantMismatch), for readers without the config. The Manager derives
	// it afresh from the running config and never reads it back.
	Mismatch string `json:"grant_mismatch,omitempty"`
}

// Sealer seals the token records before they reach the Store and opens them
// after (auth/seal's Keyring). Records are bound to their account and key,
// so one cannot stand in for another's.
type Sealer interface {
	Seal(account, key string, plain []byte) ([]byte, error)
	Open(account, key string, sealed []byte) (plain []byte, keyID string, err error)
}

// sealedStore seals the token record on its way to the store; the health
// record holds no credential and stays readable for spoolctl --spool.
type sealedStore struct {
	Store
	s Sealer
}

func (st sealedStore) AccountGet(ctx context.Context, account, key string) ([]byte, bool, error) {
	b, ok, err := st.Store.AccountGet(ctx, account, key)
	if err != nil || !ok || key != TokenKey {
		return b, ok, err
	}
	plain, _, err := st.s.Open(account, key, b)
	if err != nil {
		// The daemon checks every record at start-up, so this is a record
		// changed behind its back: not a reason to ask for a new sign-in.
		return nil, false, fmt.Errorf("opening the stored token: %w", err)
	}
	return plain, true, nil
}

func (st sealedStore) AccountPut(ctx context.Context, account, key string, value []byte) error {
	if key != TokenKey {
		return st.Store.AccountPut(ctx, account, key, value)
	}
	sealed, err := st.s.Seal(account, key, value)
	if err != nil {
		return err
	}
	return st.Store.AccountPut(ctx, account, key, sealed)
}
