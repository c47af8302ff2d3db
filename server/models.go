package server

import (
	"fmt"
	"net/url"
	"slices"

	"github.com/gofiber/fiber/v2"
)

type modelList struct {
	Object string      `json:"object"`
	Data   []modelInfo `json:"data"`
}

// modelInfo is OpenAI's model object, with the context length and whether
// the model is loaded now (a model loads on its first request).
type modelInfo struct {
	ID            string `json:"id"`
	Object        string `json:"object"`
	Created       int64  `json:"created"`
	OwnedBy       string `json:"owned_by"`
	ContextLength int    `json:"context_length"`
	Loaded        bool   `json:"loaded"`
}

func newModelInfo(st ModelStatus) modelInfo {
	owner := st.OwnedBy
	if owner == "" {
		owner = defaultOwner
	}
	return modelInfo{ID: st.ID, Object: "model", Created: st.Created.Unix(), OwnedBy: owner,
		ContextLength: st.ContextLength, Loaded: st.Loaded}
}

// listModels answers GET /v1/models: every model, loaded or not.
func (s *Server) listModels(c *fiber.Ctx) error {
	all := s.source.List()
	list := modelList{Object: "list", Data: make([]modelInfo, len(all))}
	for i, st := range all {
		list.Data[i] = newModelInfo(st)
	}
	return c.JSON(list)
}

// getModel answers GET /v1/models/{id}, by ID or alias; an ID may hold
// slashes (an Ollama name such as team/shopper:latest) and be
// percent-encoded.
func (s *Server) getModel(c *fiber.Ctx) error {
	raw := c.Params("*")
	id, err := url.PathUnescape(raw)
	if err != nil {
		id = raw
	}
	for _, st := range s.source.List() {
		if st.ID == id || slices.Contains(st.Aliases, id) {
			return c.JSON(newModelInfo(st))
		}
	}
	return &requestError{notFound: true, param: "model", code: "model_not_found",
		msg: fmt.Sprintf("The model %q does not exist.", id)}
}
