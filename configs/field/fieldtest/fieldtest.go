// Package fieldtest helps the tests of every subsystem's Validate: they
// compare the keys of the problems found, not the wording.
package fieldtest

import (
	"errors"
	"testing"

	"github.com/spoold/spoold/configs/field"
)

// Keys returns the keys of err's problems, in order (nil for a nil err); it
// fails the test if err is not field.Problems.
func Keys(t testing.TB, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var ps field.Problems
	if !errors.As(err, &ps) {
		t.Fatalf("error %v is not field.Problems", err)
	}
	var out []string
	for _, p := range ps {
		out = append(out, p.Key)
	}
	return out
}
