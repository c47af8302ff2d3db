//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package server

import "syscall"

// peerClosed reports, for a socket's fd, whether the peer has closed it,
// without reading anything.
func peerClosed(fd uintptr) bool {
	var b [1]byte
	for {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK:
			return false // open, nothing sent
		case err != nil:
			return true // reset, or otherwise unusable
		}
		return n == 0 // 0: end of stream; data: a pipelined request
	}
}

// peerClosedProbe returns a probe of conn, or nil when conn is not a
// socket.
func peerClosedProbe(conn any) func() bool {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return func() bool {
		closed := false
		if err := raw.Read(func(fd uintptr) bool {
			closed = peerClosed(fd)
			return true // never wait for readability
		}); err != nil {
			return true // the conn is closed on our side
		}
		return closed
	}
}
