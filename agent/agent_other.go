//go:build !linux

package agent

import (
	"context"
	"errors"
	"log/slog"
)

// Config is how chaos agent was started.
type Config struct {
	Listen                                 string
	PIDFile, Unit, Container               string
	StartCommand, DataDir                  string
	CertFile, KeyFile, ClientCA, TokenFile string
	InsecureLoopback                       bool
	StateDir                               string
	Log                                    *slog.Logger
}

var errLinux = errors.New("chaos agent runs on Linux nodes (signals, /proc, routes and qdiscs)")

// Check fails outside Linux.
func (c Config) Check() error { return errLinux }

// Server is Linux-only.
type Server struct{}

// New fails outside Linux.
func New(Config) (*Server, error) {
	return nil, errLinux
}

func (s *Server) Addr() string                    { return "" }
func (s *Server) Serve(ctx context.Context) error { return nil }
