package auth

import (
	"errors"

	"github.com/emersion/go-sasl"
)

// XOAUTH2 is the SASL mechanism name used by Microsoft 365 and Gmail.
const XOAUTH2 = "XOAUTH2"

type xoauth2Client struct {
	user  string
	token string
}

// NewXOAUTH2Client returns a sasl.Client for AUTH XOAUTH2 (go-sasl has none).
// The initial response is "user=<mailbox>\x01auth=Bearer <token>\x01\x01".
// On a 334 error challenge (a base64 JSON status) it answers an empty
// response so the server sends its final reply code.
func NewXOAUTH2Client(user, token string) sasl.Client {
	return &xoauth2Client{user: user, token: token}
}

func (c *xoauth2Client) Start() (mech string, ir []byte, err error) {
	if c.user == "" || c.token == "" {
		return "", nil, errors.New("xoauth2: empty user or token")
	}
	return XOAUTH2, []byte("user=" + c.user + "\x01auth=Bearer " + c.token + "\x01\x01"), nil
}

func (c *xoauth2Client) Next(challenge []byte) ([]byte, error) {
	// The server sent an error challenge; an empty response makes it send the final code.
	return []byte{}, nil
}
