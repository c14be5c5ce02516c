package configs

import (
	"fmt"

	"github.com/spoold/spoold/configs/secret"
)

// ConsoleUser is a web console login (http.console_users). PasswordHash is
// a bcrypt hash (spoolctl hash-password makes one), inline (may use ${ENV})
// or read from PasswordHashFile.
type ConsoleUser struct {
	Name             string        `yaml:"name" json:"name"`
	PasswordHash     secret.Secret `yaml:"password_hash" json:"password_hash"`
	PasswordHashFile string        `yaml:"password_hash_file" json:"password_hash_file"`
}

// httpSection resolves the HTTP listener's secrets (console password hashes,
// the metrics token); package console judges the rest.
func (v *validator) httpSection(h *HTTP) {
	for i := range h.ConsoleUsers {
		u := &h.ConsoleUsers[i]
		key := fmt.Sprintf("http.console_users[%d]", i)
		v.resolveSecret(&u.PasswordHash, u.PasswordHashFile, key+".password_hash", key+".password_hash_file")
	}
	v.resolveSecret(&h.MetricsToken, h.MetricsTokenFile, "http.metrics_token", "http.metrics_token_file")
}
