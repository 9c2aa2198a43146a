package loadgen

import (
	"context"
	"crypto/tls"
	"net"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
)

// Dialer opens a client connection to addr (host:port); nil dials plain TCP.
type Dialer func(ctx context.Context, addr string) (net.Conn, error)

// Conn is how the harness's clients reach the members: the dialer (from a network namespace, say),
// TLS and credentials. A nil *Conn is plain TCP without auth.
type Conn struct {
	Dial     Dialer
	TLS      *tls.Config
	Username string
	Password string // never logged: String leaves it out
}

// String describes the connection without its secret.
func (c *Conn) String() string {
	if c == nil {
		return "plain"
	}
	s := "plain"
	if c.TLS != nil {
		s = "tls"
	}
	if c.Username != "" {
		s += ", user " + c.Username
	}
	return s
}

// WithDial returns a copy of c whose connections are opened by dial.
func (c *Conn) WithDial(dial Dialer) *Conn {
	if c == nil && dial == nil {
		return nil
	}
	out := &Conn{}
	if c != nil {
		*out = *c
	}
	out.Dial = dial
	return out
}

// newClient makes a client of cfg reached through c.
func (c *Conn) newClient(cfg clientv3.Config) (*clientv3.Client, error) {
	if c != nil {
		if c.Dial != nil {
			cfg.DialOptions = append(cfg.DialOptions, grpc.WithContextDialer(c.Dial))
		}
		cfg.TLS = c.TLS
		cfg.Username, cfg.Password = c.Username, c.Password
	}
	return clientv3.New(cfg)
}
