package server

import (
	"encoding/json"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"

	"github.com/nextact/nextact/models"
)

// The tokenizer endpoints, shaped as llama-server's and vLLM's so that
// harness code written for either works: POST /tokenize, POST
// /detokenize, GET /tokenizer_info. They take the same API keys, rate
// limits, body limit and error shape as /v1.

// tokenizeRequest takes both dialects: llama-server's content,
// add_special and with_pieces; vLLM's prompt, messages,
// add_special_tokens and return_token_strs.
type tokenizeRequest struct {
	Model            string          `json:"model"`
	Content          *string         `json:"content"`
	Prompt           *string         `json:"prompt"`
	Messages         []chatMessage   `json:"messages"`
	AddSpecial       *bool           `json:"add_special"`
	AddSpecialTokens *bool           `json:"add_special_tokens"`
	WithPieces       bool            `json:"with_pieces"`
	ReturnTokenStrs  bool            `json:"return_token_strs"`
	AddGenPrompt     json.RawMessage `json:"add_generation_prompt"`
}

// tokenPiece is a token with its text, as llama-server's with_pieces
// gives it: the piece a string when it is valid UTF-8, else its bytes.
type tokenPiece struct {
	ID    int32 `json:"id"`
	Piece any   `json:"piece"`
}

type tokenizeResponse struct {
	// Tokens are ids, or tokenPieces with with_pieces.
	Tokens      any      `json:"tokens"`
	Count       int      `json:"count"`
	MaxModelLen int      `json:"max_model_len"`
	TokenStrs   []string `json:"token_strs,omitempty"`
}

// tokenModel leases the request's model; without one, the only model
// served.
func (s *Server) tokenModel(c *fiber.Ctx, id string) (*Model, func(), error) {
	if id == "" {
		if all := s.source.List(); len(all) == 1 {
			id = all[0].ID
		}
	}
	return s.acquire(c, id)
}

func (s *Server) tokenize(c *fiber.Ctx) error {
	ctx, cancel := s.requestContext(c)
	defer cancel()
	var req tokenizeRequest
	if err := decodeJSON(c.Body(), &req); err != nil {
		return err
	}
	m, release, err := s.tokenModel(c, req.Model)
	if err != nil {
		return err
	}
	defer release()
	var toks []int32
	switch n := countSet(req.Content != nil, req.Prompt != nil, req.Messages != nil); {
	case n == 0:
		return invalid("content", "/tokenize needs 'content' (or 'prompt') or 'messages'.")
	case n > 1:
		return invalid("content", "/tokenize takes one of 'content', 'prompt' and 'messages'.")
	case req.Messages != nil:
		if !isNull(req.AddGenPrompt) && string(req.AddGenPrompt) != "true" {
			return invalid("add_generation_prompt", "'add_generation_prompt' must be true: messages are rendered as a chat request is, ending with the assistant's header.")
		}
		msgs, err := (&chatRequest{Messages: req.Messages}).messages(s.cfg.MaxMessages)
		if err != nil {
			return err
		}
		segs, err := m.Format.RenderTools(msgs, nil) // tool turns as a chat request without tools renders them
		if err != nil {
			return invalid("messages", "The messages cannot be rendered for this model: %v.", err)
		}
		if toks, err = models.TokenizeSegments(ctx, m.Tokenizer, segs); err != nil {
			return err
		}
	default:
		// llama-server's content adds no BOS unless add_special; vLLM's
		// prompt adds it unless add_special_tokens is false.
		text, addBOS := req.Prompt, true
		if req.Content != nil {
			text, addBOS = req.Content, false
		}
		if v := firstBool(req.AddSpecial, req.AddSpecialTokens); v != nil {
			addBOS = *v
		}
		ids, err := m.Tokenizer.Tokenize(*text, true)
		if err != nil {
			return err
		}
		if addBOS {
			toks = append(append(toks, m.BOS...), ids...)
		} else {
			toks = ids
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	resp := tokenizeResponse{Tokens: orEmpty(toks), Count: len(toks), MaxModelLen: m.ContextLength}
	if req.WithPieces || req.ReturnTokenStrs {
		if m.Vocab == nil {
			return invalid("with_pieces", "This model does not expose its vocabulary.")
		}
		pieces := make([]tokenPiece, len(toks))
		strs := make([]string, len(toks))
		for i, t := range toks {
			p := m.Vocab.Piece(t)
			pieces[i], strs[i] = tokenPiece{ID: t, Piece: pieceValue(p)}, p
		}
		if req.WithPieces {
			resp.Tokens = pieces
		}
		if req.ReturnTokenStrs {
			resp.TokenStrs = strs
		}
	}
	return c.JSON(resp)
}

// pieceValue is a piece as llama-server writes it: a string when valid
// UTF-8, else its bytes.
func pieceValue(p string) any {
	if utf8.ValidString(p) {
		return p
	}
	b := make([]int, len(p))
	for i := range len(p) {
		b[i] = int(p[i])
	}
	return b
}

type detokenizeRequest struct {
	Model  string          `json:"model"`
	Tokens json.RawMessage `json:"tokens"`
}

// detokenizeResponse answers in both dialects: llama-server's content,
// vLLM's prompt.
type detokenizeResponse struct {
	Content string `json:"content"`
	Prompt  string `json:"prompt"`
}

func (s *Server) detokenize(c *fiber.Ctx) error {
	var req detokenizeRequest
	if err := decodeJSON(c.Body(), &req); err != nil {
		return err
	}
	m, release, err := s.tokenModel(c, req.Model)
	if err != nil {
		return err
	}
	defer release()
	if m.Vocab == nil {
		return invalid("model", "This model does not expose its vocabulary.")
	}
	var ids []int32
	if !isEmptyArray(req.Tokens) {
		if ids, err = tokenIDs(req.Tokens, "tokens", m.Vocab.Size()); err != nil {
			return err
		}
	}
	var text []byte
	for _, t := range ids {
		text = append(text, m.Vocab.Piece(t)...)
	}
	return c.JSON(detokenizeResponse{Content: string(text), Prompt: string(text)})
}

type tokenizerInfo struct {
	Model          string `json:"model"`
	TokenizerClass string `json:"tokenizer_class"`
	VocabSize      int    `json:"vocab_size"`
	ModelMaxLength int    `json:"model_max_length"`
	AddBOSToken    bool   `json:"add_bos_token"`
	BOSToken       any    `json:"bos_token"`
	ChatFormat     string `json:"chat_format"`
}

func (s *Server) tokenizerInfo(c *fiber.Ctx) error {
	m, release, err := s.tokenModel(c, c.Query("model"))
	if err != nil {
		return err
	}
	defer release()
	info := tokenizerInfo{Model: m.ID, TokenizerClass: "llama.cpp", VocabSize: m.vocabSize(), ModelMaxLength: m.ContextLength,
		AddBOSToken: len(m.BOS) > 0, ChatFormat: string(m.Format)}
	if len(m.BOS) > 0 && m.Vocab != nil {
		info.BOSToken = m.Vocab.Piece(m.BOS[0])
	}
	return c.JSON(info)
}

func countSet(bs ...bool) (n int) {
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

func firstBool(bs ...*bool) *bool {
	for _, b := range bs {
		if b != nil {
			return b
		}
	}
	return nil
}

// orEmpty keeps an empty token list a JSON array, not null.
func orEmpty(t []int32) []int32 {
	if t == nil {
		return []int32{}
	}
	return t
}
