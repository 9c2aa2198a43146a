package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client is the controller's side of one agent.
type Client struct {
	URL   string
	token string
	http  *http.Client
}

// NewClient reaches the agent at rawURL (https://HOST:PORT, or http://127.0.0.1:PORT for an agent
// on loopback) with tlsCfg (the CA, and the controller's certificate for mutual TLS) and token.
func NewClient(rawURL string, tlsCfg *tls.Config, token string) (*Client, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("agent URL %q: want https://HOST:PORT", rawURL)
	}
	tr := &http.Transport{TLSClientConfig: tlsCfg, MaxIdleConnsPerHost: 4, IdleConnTimeout: 30 * time.Second,
		TLSHandshakeTimeout: 5 * time.Second, ResponseHeaderTimeout: 30 * time.Second}
	return &Client{URL: strings.TrimSuffix(rawURL, "/"), token: token, http: &http.Client{Transport: tr}}, nil
}

// SetDial makes the client reach the agent through dial (a test's network namespace, a jump host).
func (c *Client) SetDial(dial func(ctx context.Context, network, addr string) (net.Conn, error)) {
	c.http.Transport.(*http.Transport).DialContext = dial
}

// Close drops the idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// RefusedError is the agent's refusal of a request (a 4xx: not authenticated, not its etcd, a
// fault already held), as against a step that failed.
type RefusedError struct {
	Code int
	Msg  string
}

func (e *RefusedError) Error() string { return e.Msg }

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.URL+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("agent %s: %w", c.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("agent %s: %w", c.URL, err)
	}
	if resp.StatusCode/100 != 2 {
		var eb ErrorBody
		msg := strings.TrimSpace(string(b))
		if json.Unmarshal(b, &eb) == nil && eb.Error != "" {
			msg = eb.Error
		}
		if resp.StatusCode/100 == 4 {
			return &RefusedError{Code: resp.StatusCode, Msg: fmt.Sprintf("agent %s refused: %s", c.URL, msg)}
		}
		// A heal that failed part-way still says what it healed: out holds it.
		if out != nil && eb.Error == "" {
			_ = json.Unmarshal(b, out)
		}
		return fmt.Errorf("agent %s: %s", c.URL, msg)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("agent %s: %w", c.URL, err)
	}
	return nil
}

// State reads etcd's process state on the node.
func (c *Client) State(ctx context.Context) (ProcStatus, error) {
	var st ProcStatus
	err := c.do(ctx, http.MethodGet, "/v1/process", nil, &st)
	return st, err
}

// Process carries out a process step and returns the state the agent read back.
func (c *Client) Process(ctx context.Context, req ProcRequest) (ProcStatus, error) {
	var st ProcStatus
	err := c.do(ctx, http.MethodPost, "/v1/process", req, &st)
	return st, err
}

// Net applies or heals a peer-link fault on the node.
func (c *Client) Net(ctx context.Context, req NetRequest) (NetResult, error) {
	var res NetResult
	err := c.do(ctx, http.MethodPost, "/v1/net", req, &res)
	return res, err
}

// Disk fills or heals the data dir's filesystem.
func (c *Client) Disk(ctx context.Context, req DiskRequest) (DiskResult, error) {
	var res DiskResult
	err := c.do(ctx, http.MethodPost, "/v1/disk", req, &res)
	return res, err
}

// Renew renews owner's holds (all with owner "") for ttl more.
func (c *Client) Renew(ctx context.Context, owner string, ttl time.Duration) error {
	return c.do(ctx, http.MethodPost, "/v1/renew", RenewRequest{Owner: owner, TTLMs: ttl.Milliseconds()}, nil)
}

// Heal heals owner's holds (every hold with owner "").
func (c *Client) Heal(ctx context.Context, owner string) (HealResult, error) {
	var res HealResult
	err := c.do(ctx, http.MethodPost, "/v1/heal", HealRequest{Owner: owner}, &res)
	return res, err
}

// Holds lists what the agent holds now.
func (c *Client) Holds(ctx context.Context) ([]Hold, error) {
	var out []Hold
	err := c.do(ctx, http.MethodGet, "/v1/holds", nil, &out)
	return out, err
}

// Facts reads the node's facts; sent and got bracket the agent's answer (its clock's offset from
// ours is Time minus their midpoint, give or take half their difference).
func (c *Client) Facts(ctx context.Context) (f Facts, sent, got time.Time, err error) {
	sent = time.Now()
	err = c.do(ctx, http.MethodGet, "/v1/facts", nil, &f)
	got = time.Now()
	return f, sent, got, err
}

// ClockOffset is the agent's clock minus ours, and its uncertainty, from one Facts call.
func ClockOffset(f Facts, sent, got time.Time) (offset, within time.Duration) {
	mid := sent.Add(got.Sub(sent) / 2)
	return f.Time.Sub(mid), got.Sub(sent) / 2
}

// IsRefused says whether err is an agent's refusal.
func IsRefused(err error) bool {
	var r *RefusedError
	return errors.As(err, &r)
}
