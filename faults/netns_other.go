//go:build !linux

package faults

import (
	"context"
	"errors"
	"net"
)

// NetnsDir is where named network namespaces are bound on Linux.
const NetnsDir = "/run/netns"

var errNetnsLinux = errors.New("network: netns needs Linux (network namespaces and netlink); use network: proxy")

// Netns is the Linux-only namespace backend; elsewhere it cannot be made.
type Netns struct{}

// NewNetns fails outside Linux.
func NewNetns(prefix, subnet string, members []string) (*Netns, error) { return nil, errNetnsLinux }

func (n *Netns) Name() string                                            { return "netns" }
func (n *Netns) IP(member string) string                                 { return "" }
func (n *Netns) NsPath(member string) string                             { return "" }
func (n *Netns) Namespaces() []string                                    { return nil }
func (n *Netns) Close() error                                            { return nil }
func (n *Netns) NetemAvailable() error                                   { return errNetnsLinux }
func (n *Netns) Supports(Shape) error                                    { return errNetnsLinux }
func (n *Netns) Apply(ctx context.Context, links []Link, s Shape) error  { return errNetnsLinux }
func (n *Netns) Verify(ctx context.Context, links []Link, s Shape) error { return errNetnsLinux }
func (n *Netns) Heal(ctx context.Context, links []Link) error            { return errNetnsLinux }
func (n *Netns) VerifyHealed(ctx context.Context, links []Link) error    { return errNetnsLinux }
func (n *Netns) Reset(ctx context.Context, links []Link) error           { return errNetnsLinux }
func (n *Netns) Blackholes(member string) ([]Link, error)                { return nil, errNetnsLinux }
func (n *Netns) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	return nil, errNetnsLinux
}

// DeleteNamespaces has nothing to delete outside Linux.
func DeleteNamespaces(names []string) error { return nil }

// ListNamespaces has nothing to list outside Linux.
func ListNamespaces(prefix string) ([]string, error) { return nil, nil }

// NetnsAddr is Linux-only.
func NetnsAddr(subnet string, i int) (string, error) { return "", errNetnsLinux }

// BlackholeRoutes is Linux-only.
func BlackholeRoutes(ns string) ([]string, error) { return nil, errNetnsLinux }

// NetnsOfPIDs is Linux-only.
func NetnsOfPIDs(lookup func(member string) (pid int, ip string, err error)) *Netns { return &Netns{} }
