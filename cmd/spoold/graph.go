package main

import (
	"cmp"

	"github.com/spoold/spoold/auth"
	"github.com/spoold/spoold/configs"
	"github.com/spoold/spoold/configs/field"
	"github.com/spoold/spoold/delivery"
)

// The Graph transport's share of the conversion: what joins the account's
// auth half (scopes for the Graph audience, Mail.ReadWrite when large
// messages go as drafts) and its delivery half (the Graph root, the
// provider's sending limits).

// graphLarge is graph_large_messages with its default (on).
func graphLarge(a configs.Account) bool {
	return a.GraphLargeMessages == nil || *a.GraphLargeMessages
}

// graphDeliveryAccount finishes a graph account's delivery options from
// the provider preset: its Graph root, and Exchange Online's sending
// limits, which bind Graph as they bind SMTP (30 messages a minute, 35 MB,
// 10,000 recipients a day). Connections stay delivery's Graph default
// (4, Graph's concurrent requests per mailbox), not SMTP's 3.
func graphDeliveryAccount(a configs.Account, d delivery.AccountConfig) delivery.AccountConfig {
	d.GraphSendMailOnly, d.GraphEndpoint = !graphLarge(a), a.GraphEndpoint
	if p, err := auth.Preset(auth.Provider(a.Provider), a.Tenant); err == nil {
		d.GraphEndpoint = cmp.Or(a.GraphEndpoint, p.GraphEndpoint)
		d.RatePerMinute = cmp.Or(d.RatePerMinute, p.RatePerMinute)
		d.MaxMessageSize = cmp.Or(d.MaxMessageSize, p.MaxMessageSize)
		d.IdleTimeout = cmp.Or(d.IdleTimeout, p.IdleTimeout)
		d.DailyRecipientLimit = cmp.Or(d.DailyRecipientLimit, p.DailyRecipients)
	}
	return d
}

// graphCoherence checks the keys that only make sense with or without
// transport graph.
func graphCoherence(a configs.Account) field.Problems {
	var ps field.Problems
	if a.Transport != configs.TransportGraph {
		if a.GraphEndpoint != "" {
			ps.Add("graph_endpoint", "graph_endpoint is only used with transport graph")
		}
		return ps
	}
	switch a.Provider {
	case configs.ProviderMicrosoft, configs.ProviderMicrosoftUSGov:
	case configs.ProviderNone:
		ps.Add("provider", "transport graph needs provider microsoft or microsoft-usgov (Graph takes OAuth tokens from Entra ID)")
	}
	for key, set := range map[string]bool{"host": a.Host != "", "port": a.Port != 0, "tls": a.TLS != "", "server_name": a.ServerName != "",
		"auth": a.Auth != "", "username": a.Username != "", "password": a.Password != "" || a.PasswordFile != "",
		"max_messages_per_connection": a.MaxMessagesPerConnection != 0} {
		if set {
			ps.Add(key, "%s is only used with transport smtp; transport graph sends over HTTPS to graph_endpoint", key)
		}
	}
	return ps
}
