//go:build !linux

package adminapi

import (
	"errors"
	"net"
)

// peerCred is only implemented on Linux (SO_PEERCRED); elsewhere every
// socket request is refused as from an unknown user.
func peerCred(net.Conn) (Peer, error) {
	return Peer{}, errors.New("peer credentials are only read on Linux")
}
