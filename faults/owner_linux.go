package faults

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
)

// SocketOwner returns a Proxy.Owner that names the member whose process holds the dialling end of
// an accepted loopback connection, by finding the socket in /proc/net/tcp and its inode among the
// member processes' open files. members gives the live PIDs by member name.
func SocketOwner(members func() map[string]int) func(net.Conn) string {
	return func(c net.Conn) string {
		remote, ok1 := c.RemoteAddr().(*net.TCPAddr)
		local, ok2 := c.LocalAddr().(*net.TCPAddr)
		if !ok1 || !ok2 {
			return ""
		}
		inode := socketInode(remote, local)
		if inode == "" {
			return ""
		}
		want := "socket:[" + inode + "]"
		for name, pid := range members() {
			fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
			for _, fd := range fds {
				if l, err := os.Readlink(fd); err == nil && l == want {
					return name
				}
			}
		}
		return ""
	}
}

func procAddr(a *net.TCPAddr) string {
	ip := a.IP.To4()
	if ip == nil {
		return ""
	}
	return fmt.Sprintf("%08X:%04X", binary.NativeEndian.Uint32(ip), a.Port)
}

// socketInode finds the inode of the TCP socket whose local end is local and remote end remote.
func socketInode(local, remote *net.TCPAddr) string {
	l, r := procAddr(local), procAddr(remote)
	if l == "" || r == "" {
		return ""
	}
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) >= 10 && fs[1] == l && fs[2] == r {
			return fs[9]
		}
	}
	return ""
}
