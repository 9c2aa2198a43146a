package preflight

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// scratchTLS is the scratch member's own TLS: a CA made for this one preflight, a server
// certificate for 127.0.0.1 (client and peer listeners) and a client certificate only this process
// holds. The scratch member serves a copy of the cluster's data: over plain http any local user
// could read every key while the check runs; it takes only clients with this certificate.
type scratchTLS struct {
	CA, Cert, Key string      // files the scratch member reads (in the 0700 scratch folder)
	Client        *tls.Config // the harness's client of it
}

// newScratchTLS writes the CA and the server's key pair into dir; clientCN is the client
// certificate's common name (with client-certificate auth, etcd takes it as the user).
func newScratchTLS(dir, clientCN string) (*scratchTLS, error) {
	ca, err := newMiniCA("etcd-chaos preflight scratch CA")
	if err != nil {
		return nil, err
	}
	srvDER, srvKey, err := ca.issue("preflight-restore", []net.IP{net.ParseIP("127.0.0.1")})
	if err != nil {
		return nil, err
	}
	cliDER, cliKey, err := ca.issue(clientCN, nil)
	if err != nil {
		return nil, err
	}
	st := &scratchTLS{CA: filepath.Join(dir, "scratch-ca.pem"), Cert: filepath.Join(dir, "scratch-server.pem"), Key: filepath.Join(dir, "scratch-server-key.pem")}
	keyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		return nil, err
	}
	for _, f := range []struct {
		path, kind string
		der        []byte
	}{{st.CA, "CERTIFICATE", ca.der}, {st.Cert, "CERTIFICATE", srvDER}, {st.Key, "EC PRIVATE KEY", keyDER}} {
		if err := os.WriteFile(f.path, pem.EncodeToMemory(&pem.Block{Type: f.kind, Bytes: f.der}), 0o600); err != nil {
			return nil, fmt.Errorf("writing the scratch member's TLS: %w", err)
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	st.Client = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12,
		Certificates: []tls.Certificate{{Certificate: [][]byte{cliDER}, PrivateKey: cliKey}}}
	return st, nil
}

// miniCA is a certificate authority made on the spot, for one preflight (a day long).
type miniCA struct {
	cert   *x509.Certificate
	der    []byte
	key    *ecdsa.PrivateKey
	serial int64
}

func newMiniCA(cn string) (*miniCA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &miniCA{cert: cert, der: der, key: key, serial: 1}, nil
}

// issue signs a certificate for cn (and ips) good for server and client authentication.
func (ca *miniCA) issue(cn string, ips []net.IP) ([]byte, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	ca.serial++
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(ca.serial), Subject: pkix.Name{CommonName: cn}, IPAddresses: ips,
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	return der, key, err
}
