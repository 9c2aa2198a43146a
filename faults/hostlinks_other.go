//go:build !linux

package faults

import (
	"errors"
	"net"
)

var errHostLinks = errors.New("faults on a host's links need Linux (routes and qdiscs through netlink)")

// HostLinks is Linux-only.
type HostLinks struct{}

func EgressLink(ip net.IP) (string, error)                           { return "", errHostLinks }
func NewHostLinks(iface string) (*HostLinks, error)                  { return nil, errHostLinks }
func (hl *HostLinks) Close()                                         {}
func (hl *HostLinks) Shaped() (string, error)                        { return "", errHostLinks }
func (hl *HostLinks) Apply(peers []net.IP, s Shape) error            { return errHostLinks }
func (hl *HostLinks) Verify(peers []net.IP, s Shape) error           { return errHostLinks }
func (hl *HostLinks) Heal(peers []net.IP, shaped bool) error         { return errHostLinks }
func (hl *HostLinks) VerifyHealed(peers []net.IP, shaped bool) error { return errHostLinks }
func NetemHere() error                                               { return errHostLinks }
