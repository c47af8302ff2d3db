package client

import (
	"context"
	"fmt"
)

// DefaultModel returns the first model id the server lists (GET
// /v1/models): the model a tool uses when none is given. A server that
// lists none is an error that says to pass one.
func (c *Client) DefaultModel(ctx context.Context) (string, error) {
	ids, err := c.Models(ctx)
	if err != nil {
		return "", fmt.Errorf("list models of %s: %w", c.base, err)
	}
	if len(ids) == 0 {
		return "", fmt.Errorf("list models of %s: the server lists none; pass --model", c.base)
	}
	return ids[0], nil
}
