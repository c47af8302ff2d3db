package nextaction

// NextActionRequest is the body of POST /v1/actions/next.
type NextActionRequest struct {
	Model   string `json:"model"`
	Page    string `json:"page"`
	History []Step `json:"history,omitempty"`
	Persona string `json:"persona,omitempty"`
	// Format is "prompted" or "finetuned"; empty means the model's default.
	Format      string   `json:"format,omitempty"`
	Temperature *float64 `json:"temperature,omitempty"`
	Seed        *uint64  `json:"seed,omitempty"`
	MaxTokens   int      `json:"max_tokens,omitempty"`
	// HistoryPolicy is how a history that does not fit is handled (the
	// window by default; window.go).
	HistoryPolicy *HistoryPolicy `json:"history_policy,omitempty"`
}

// NextActionResponse is the answer of POST /v1/actions/next. Action is
// always valid on the request's page.
type NextActionResponse struct {
	Action    Action `json:"action"`
	Rationale string `json:"rationale"`
	Usage     Usage  `json:"usage"`
	Timing    Timing `json:"timing"`
}

// Usage counts tokens as the OpenAI API does.
type Usage struct {
	PromptTokens        int                  `json:"prompt_tokens"`
	CompletionTokens    int                  `json:"completion_tokens"`
	TotalTokens         int                  `json:"total_tokens"`
	PromptTokensDetails *PromptTokensDetails `json:"prompt_tokens_details,omitempty"`
	// History is what the history policy left out of the prompt (an
	// extension; next actions only).
	History *HistoryUsage `json:"history,omitempty"`
}

// PromptTokensDetails tells how many prompt tokens were reused from cache.
type PromptTokensDetails struct {
	CachedTokens int `json:"cached_tokens"`
}

// Timing is the server-side time of one request, in milliseconds.
type Timing struct {
	// TotalMs is from the request's arrival to its answer.
	TotalMs float64 `json:"total_ms"`
	// FirstTokenMs is from arrival to the first generated token.
	FirstTokenMs float64 `json:"first_token_ms"`
}

// ErrorResponse is the body of every error answer (OpenAI's shape).
type ErrorResponse struct {
	Error APIError `json:"error"`
}

// APIError is OpenAI's error object. Param names the offending request
// field (for instance history[3].action.type) and Code a machine-readable
// reason; both are null when absent.
type APIError struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}
