package configs

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spoold/spoold/configs/field"
	"github.com/spoold/spoold/configs/secret"
)

// maxSecretFile bounds what is read from a *_file (a secret is a line).
const maxSecretFile = 1 << 20

// expandEnv replaces each ${NAME} in s with the variable's value. Unset
// variables are returned in missing; a "${" without "}" or with an invalid
// name is a syntax error. A "$" not followed by "{" is kept, so bcrypt hashes
// ($2a$10$...) pass through unchanged.
func expandEnv(s string, env func(string) (string, bool)) (out string, missing []string, err error) {
	if !strings.Contains(s, "${") {
		return s, nil, nil
	}
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			break
		}
		b.WriteString(s[:i])
		rest := s[i+2:]
		j := strings.IndexByte(rest, '}')
		if j < 0 {
			return "", nil, fmt.Errorf("unterminated ${ in value: write ${NAME}")
		}
		name := rest[:j]
		if !validEnvName(name) {
			return "", nil, fmt.Errorf("${%s} is not a valid environment variable reference: want ${NAME} with letters, digits and _", field.Clip(name))
		}
		val, ok := env(name)
		if !ok {
			missing = append(missing, name)
		}
		b.WriteString(val)
		s = rest[j+1:]
	}
	return b.String(), missing, nil
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_', r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// readSecretFile checks the permissions of path and returns its trimmed
// content. Problems never include the content.
func readSecretFile(path string) (string, string) {
	if reason := field.PrivateFile(path); reason != "" {
		return "", reason
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Sprintf("cannot read %s: %v", path, field.UnwrapPathErr(err))
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return "", fmt.Sprintf("cannot read %s: %v", path, field.UnwrapPathErr(err))
	}
	if len(data) > maxSecretFile {
		return "", fmt.Sprintf("secret file %s is larger than 1 MiB", path)
	}
	s := strings.TrimSpace(string(data))
	if s == "" {
		return "", fmt.Sprintf("secret file %s is empty", path)
	}
	return s, ""
}

// resolveSecret fills *value from ${ENV} references or from file. key is
// the value's key; fileKey that of the *_file key.
func (v *validator) resolveSecret(value *secret.Secret, file, key, fileKey string) {
	if *value != "" && file != "" {
		v.problem(fileKey, "set %s or %s, not both", lastKey(key), lastKey(fileKey))
		return
	}
	if file != "" {
		s, reason := readSecretFile(file)
		if reason != "" {
			v.problem(fileKey, "%s", reason)
			return
		}
		*value = secret.Secret(s)
		return
	}
	if *value == "" {
		return
	}
	out, missing, err := expandEnv(string(*value), v.env)
	if err != nil {
		v.problem(key, "%v", err)
		return
	}
	for _, name := range missing {
		v.problem(key, "environment variable %s is not set", name)
	}
	if len(missing) == 0 {
		*value = secret.Secret(out)
	}
}

func lastKey(key string) string {
	if i := strings.LastIndexByte(key, '.'); i >= 0 {
		return key[i+1:]
	}
	return key
}
