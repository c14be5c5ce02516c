package auth

import (
	"fmt"
	"strings"
	"time"
)

// Provider names an OAuth2 identity provider preset.
type Provider string

// Providers with presets.
const (
	ProviderMicrosoft      Provider = "microsoft"       // Entra ID global cloud
	ProviderMicrosoftUSGov Provider = "microsoft-usgov" // GCC High / DoD
	ProviderGoogle         Provider = "google"
	ProviderGeneric        Provider = "generic" // every URL and scope from config
)

// Flow names how an account obtains its tokens.
type Flow string

// Flows.
const (
	// FlowAuthCode: delegated, authorization code with PKCE through the callback (default).
	FlowAuthCode Flow = "authcode"
	// FlowDevice: delegated, device code login (user code + verification URL).
	FlowDevice Flow = "device"
	// FlowClientCredentials: app-only with a client secret or certificate.
	FlowClientCredentials Flow = "client_credentials"
	// FlowServiceAccount: Google service account with domain-wide delegation.
	FlowServiceAccount Flow = "service_account"
)

// Delegated reports whether the flow holds a user's refresh token.
func (f Flow) Delegated() bool { return f == FlowAuthCode || f == FlowDevice }

// MB is 10^6 bytes, the unit providers state their limits in.
const MB = 1000 * 1000

// PresetInfo is a provider's endpoints, scopes, SMTP submission address and
// the sending limits delivery uses as an account's defaults. A zero limit
// means the provider documents none: delivery applies its generic default.
type PresetInfo struct {
	Provider      Provider
	AuthURL       string
	TokenURL      string
	DeviceAuthURL string
	// Scopes are the delegated scopes (authcode and device flows).
	Scopes []string
	// AppScopes are the app-only scopes (client_credentials, service_account).
	AppScopes []string
	// IdentityScopes are added to delegated logins so the token endpoint
	// returns an ID token naming the signed-in user.
	IdentityScopes []string
	SMTPHost       string
	SMTPPort       int
	// GraphEndpoint is the cloud's Microsoft Graph root, for accounts with
	// transport graph ("" for providers without Graph).
	GraphEndpoint string
	// MaxConnections is how many SMTP connections one mailbox may have open
	// at once (more are refused, e.g. Exchange's 432 4.3.2).
	MaxConnections int
	// RatePerMinute is how many messages one mailbox may submit per minute.
	RatePerMinute float64
	// MaxMessageSize is the largest message the provider accepts, in bytes.
	MaxMessageSize int64
	// DailyRecipients is how many recipients one mailbox may send to in a
	// rolling 24 hours before the provider refuses more.
	DailyRecipients int
	// IdleTimeout is how long delivery keeps an idle connection for more
	// mail: long enough that a trickle of scans (one every few seconds at
	// Microsoft's 30 a minute) reuses its connection, well under the 5
	// minutes RFC 5321 section 4.5.3.2.7 asks servers to wait for the next
	// command.
	IdleTimeout time.Duration
}

// providerIdleTimeout is the keep-alive of the provider presets.
const providerIdleTimeout = time.Minute

// SMTPAddr is host:port, or "" when the preset has no SMTP host.
func (p PresetInfo) SMTPAddr() string {
	if p.SMTPHost == "" {
		return ""
	}
	return fmt.Sprintf("%s:%d", p.SMTPHost, p.SMTPPort)
}

// Preset returns a provider's endpoints, default scopes, SMTP host:port and
// sending limits with the tenant substituted. For Microsoft an empty tenant means
// "organizations" (any work account). Generic returns an empty preset: every
// value comes from the config.
func Preset(provider Provider, tenant string) (PresetInfo, error) {
	switch provider {
	case ProviderMicrosoft, ProviderMicrosoftUSGov:
		if tenant == "" {
			tenant = "organizations"
		}
		if strings.ContainsAny(tenant, "/?#% \t\r\n") {
			return PresetInfo{}, fmt.Errorf("provider %s: tenant %q contains characters not allowed in a tenant ID or domain: use the directory (tenant) ID or a domain", provider, tenant)
		}
		host, smtpHost, resource, appResource := "login.microsoftonline.com", "smtp.office365.com", "https://outlook.office.com", "https://outlook.office365.com"
		graph := GraphGlobal
		if provider == ProviderMicrosoftUSGov {
			host, smtpHost, resource, appResource = "login.microsoftonline.us", "smtp.office365.us", "https://outlook.office365.us", "https://outlook.office365.us"
			graph = GraphUSGovL4
		}
		base := "https://" + host + "/" + tenant + "/oauth2/v2.0/"
		return PresetInfo{
			Provider:       provider,
			AuthURL:        base + "authorize",
			TokenURL:       base + "token",
			DeviceAuthURL:  base + "devicecode",
			Scopes:         []string{resource + "/SMTP.Send", "offline_access"},
			AppScopes:      []string{appResource + "/.default"},
			IdentityScopes: []string{"openid", "profile", "email"},
			SMTPHost:       smtpHost,
			SMTPPort:       587,
			GraphEndpoint:  graph,
			// SMTP AUTH submission: 3 concurrent connections per mailbox,
			// 30 messages per minute (learn.microsoft.com/en-us/exchange/
			// troubleshoot/send-emails/smtp-submission-improvements); the
			// default maximum send size is 35 MB (learn.microsoft.com/en-us/
			// office365/servicedescriptions/exchange-online-service-description/
			// exchange-online-limits#message-limits). The US Government
			// clouds share these limits.
			MaxConnections: 3,
			RatePerMinute:  30,
			MaxMessageSize: 35 * MB,
			// Recipient rate limit: 10,000 recipients a day per mailbox
			// (exchange-online-limits#sending-limits-1, same page).
			DailyRecipients: 10000,
			IdleTimeout:     providerIdleTimeout,
		}, nil
	case ProviderGoogle:
		return PresetInfo{
			Provider:       provider,
			AuthURL:        "https://accounts.google.com/o/oauth2/v2/auth",
			TokenURL:       "https://oauth2.googleapis.com/token",
			DeviceAuthURL:  "https://oauth2.googleapis.com/device/code",
			Scopes:         []string{"https://mail.google.com/"},
			AppScopes:      []string{"https://mail.google.com/"},
			IdentityScopes: []string{"openid", "email"},
			SMTPHost:       "smtp.gmail.com",
			SMTPPort:       587,
			// No limits: Google documents per-day sending limits for
			// smtp.gmail.com (support.google.com/a/answer/166852: 2,000
			// messages a day, 100 recipients per message over SMTP) but no
			// per-minute rate and no connection limit, and its 25 MB is a
			// limit on attachments (support.google.com/mail/answer/6584,
			// support.google.com/a/answer/9050120), not on the encoded
			// message, which is about a third larger. Delivery's generic
			// defaults and the server's own SIZE answer apply.
			// The daily budget is Workspace's 2,000 (the same page; a
			// consumer Gmail account gets about 500).
			DailyRecipients: 2000,
			IdleTimeout:     providerIdleTimeout,
		}, nil
	case ProviderGeneric:
		return PresetInfo{Provider: provider}, nil
	default:
		return PresetInfo{}, fmt.Errorf("unknown provider %q: use microsoft, microsoft-usgov, google or generic", provider)
	}
}

// Microsoft Graph roots of the national clouds (learn.microsoft.com/en-us/
// graph/deployments): the global service, US Government L4 (GCC High) and
// US Government L5 (DoD). Each is also the audience of its tokens: a token
// for one is refused by the others. GCC (moderate) tenants use the global
// service.
const (
	GraphGlobal  = "https://graph.microsoft.com"
	GraphUSGovL4 = "https://graph.microsoft.us"
	GraphUSGovL5 = "https://dod-graph.microsoft.us"
)

// graphResources are the Graph hosts a token audience may name.
var graphResources = []string{GraphGlobal, GraphUSGovL4, GraphUSGovL5, "https://microsoftgraph.chinacloudapi.cn"}

// GraphResource is the token audience for Graph at endpoint: the endpoint
// itself when it is one of Microsoft's Graph roots, else (a test server, a
// proxy in front of Graph) the provider's own Graph root.
func GraphResource(provider Provider, endpoint string) string {
	e := strings.TrimRight(strings.ToLower(strings.TrimSpace(endpoint)), "/")
	for _, r := range graphResources {
		if e == r {
			return r
		}
	}
	if provider == ProviderMicrosoftUSGov {
		return GraphUSGovL4
	}
	return GraphGlobal
}

// GraphScopes are the scopes a Graph account asks for: delegated flows
// get Mail.Send (user-sendmail's permission), plus Mail.ReadWrite when
// large messages go through drafts and upload sessions
// (user-post-messages, attachment-createuploadsession), and
// offline_access for a refresh token; app-only flows get the resource's
// .default, which carries the application permissions an admin consented to.
func GraphScopes(resource string, delegated, readWrite bool) []string {
	if !delegated {
		return []string{resource + "/.default"}
	}
	s := []string{resource + "/Mail.Send"}
	if readWrite {
		s = append(s, resource+"/Mail.ReadWrite")
	}
	return append(s, "offline_access")
}
