package main

import (
	"context"
	"errors"
	"slices"
	"testing"
)

// The composition root frees what it built last first (scheduler before
// telemetry before engine), joining every error.
func TestClosersRunLastFirst(t *testing.T) {
	var order []string
	var cs closers
	for _, name := range []string{"engine", "telemetry", "scheduler"} {
		cs.add(func(context.Context) error {
			order = append(order, name)
			if name == "telemetry" {
				return errors.New("telemetry stuck")
			}
			return nil
		})
	}
	err := cs.close(context.Background())
	if want := []string{"scheduler", "telemetry", "engine"}; !slices.Equal(order, want) {
		t.Errorf("close order %q, want %q", order, want)
	}
	if err == nil || err.Error() != "telemetry stuck" {
		t.Errorf("close error %v, want the telemetry's", err)
	}
}
