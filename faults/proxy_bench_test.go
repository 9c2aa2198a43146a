package faults

import (
	"io"
	"net"
	"testing"
)

// BenchmarkProxyRoundTrip sends 1 KiB to an echo server and reads it back, directly and through a
// proxy link with no fault on it: the difference is what the proxy adds to every exchange.
func BenchmarkProxyRoundTrip(b *testing.B) {
	for _, via := range []string{"direct", "proxy"} {
		b.Run(via, func(b *testing.B) {
			addr := echoServer(b)
			if via == "proxy" {
				p := NewProxy(1, nil)
				defer p.Close()
				var err error
				if addr, err = p.Listen("b", "127.0.0.1:0", addr, false); err != nil {
					b.Fatal(err)
				}
			}
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			msg := make([]byte, 1024)
			buf := make([]byte, 1024)
			b.SetBytes(1024)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
