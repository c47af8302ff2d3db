package server

import "time"

// SetKeepAlive sets how often a stream without text yet writes a comment.
// Call it before the server serves.
func SetKeepAlive(s *Server, d time.Duration) { s.keepAlive = d }

// RequestPriority exposes the priority the auth middleware resolved.
var RequestPriority = requestPriority

// SessionCount is the sessions held, expired ones not yet swept included.
func SessionCount(s *Server) int { n, _ := s.sessions.held(); return n }

// SweepSessions runs one pass of the session janitor.
func SweepSessions(s *Server) { s.sessions.sweep() }
