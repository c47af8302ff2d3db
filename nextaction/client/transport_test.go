package client_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nextact/nextact/nextaction/client"
)

// closingServer answers the first request on each connection and closes
// the connection, without a byte, when a second request arrives on it: a
// server whose keep-alive timeout fired just as the client reused the
// connection.
type closingServer struct {
	ln       net.Listener
	conns    atomic.Int64
	answered atomic.Int64
	wg       sync.WaitGroup
}

func newClosingServer(t *testing.T) *closingServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &closingServer{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns.Add(1)
			s.wg.Add(1)
			go s.serve(c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.wg.Wait()
	})
	return s
}

func (s *closingServer) serve(c net.Conn) {
	defer s.wg.Done()
	defer c.Close()
	rd := bufio.NewReader(c)
	for n := 0; ; n++ {
		req, err := http.ReadRequest(rd)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		if n > 0 {
			return // close the reused connection without answering
		}
		s.answered.Add(1)
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok")
	}
}

func post(h *http.Client, url string) error {
	resp, err := h.Post(url, "application/json", strings.NewReader(`{"x":1}`))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.ReadAll(resp.Body)
	return err
}

// A POST on a reused connection that the server closes before answering
// fails with Go's default transport (it resends only idempotent requests)
// and succeeds with NewHTTPClient, which resends it on a fresh connection.
func TestStaleConnectionRetried(t *testing.T) {
	t.Parallel()
	t.Run("default transport fails", func(t *testing.T) {
		t.Parallel()
		s := newClosingServer(t)
		h := &http.Client{Transport: &http.Transport{}}
		defer h.CloseIdleConnections()
		url := "http://" + s.ln.Addr().String()
		if err := post(h, url); err != nil {
			t.Fatal(err)
		}
		if err := post(h, url); err == nil {
			t.Fatal("the second POST on the closed connection succeeded: the test server does not stage the failure")
		}
	})
	t.Run("NewHTTPClient retries", func(t *testing.T) {
		t.Parallel()
		s := newClosingServer(t)
		h := client.NewHTTPClient(4)
		defer h.CloseIdleConnections()
		url := "http://" + s.ln.Addr().String()
		for i := range 5 {
			if err := post(h, url); err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
		}
		if got := s.answered.Load(); got != 5 {
			t.Errorf("answered %d, want 5", got)
		}
		if got := s.conns.Load(); got < 5 {
			t.Errorf("%d connections for 5 answers on a server that answers once per connection", got)
		}
	})
}

// A failure on a fresh connection is not retried (connection refused).
func TestFreshConnectionErrorNotRetried(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close()
	if err := post(client.NewHTTPClient(1), url); err == nil {
		t.Fatal("POST to a closed port succeeded")
	}
}
