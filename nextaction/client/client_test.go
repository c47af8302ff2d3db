package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nextact/nextact/nextaction"
	"github.com/nextact/nextact/nextaction/client"
)

var request = nextaction.NextActionRequest{
	Model:   "shopper-7b",
	Page:    `<button name="buy_now">Buy</button>`,
	History: []nextaction.Step{{Page: "<p>x</p>", Action: nextaction.Action{Type: "click", Name: "a"}, Rationale: "r"}},
	Format:  "finetuned",
}

var response = nextaction.NextActionResponse{
	Action:    nextaction.Action{Type: "click", Name: "buy_now"},
	Rationale: "It fits my budget.",
	Usage:     nextaction.Usage{PromptTokens: 100, CompletionTokens: 12, TotalTokens: 112, PromptTokensDetails: &nextaction.PromptTokensDetails{CachedTokens: 64}},
	Timing:    nextaction.Timing{TotalMs: 40.5, FirstTokenMs: 20.25},
}

func TestNextAction(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		apiKey   string
		wantAuth string
	}{
		{"without key", "", ""},
		{"with key", "sk-test", "Bearer sk-test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodPost || r.URL.Path != "/v1/actions/next" {
					http.Error(w, "wrong route "+r.Method+" "+r.URL.Path, http.StatusNotFound)
					return
				}
				if got := r.Header.Get("Authorization"); got != tt.wantAuth {
					http.Error(w, "auth "+got, http.StatusUnauthorized)
					return
				}
				if ct := r.Header.Get("Content-Type"); ct != "application/json" {
					http.Error(w, "content type "+ct, http.StatusUnsupportedMediaType)
					return
				}
				var got nextaction.NextActionRequest
				if err := json.NewDecoder(r.Body).Decode(&got); err != nil || !reflect.DeepEqual(got, request) {
					http.Error(w, "request differs", http.StatusBadRequest)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				// An unknown field must not break an older client.
				_, _ = io.WriteString(w, `{"action":{"type":"click","name":"buy_now"},"rationale":"It fits my budget.","future":1,
					"usage":{"prompt_tokens":100,"completion_tokens":12,"total_tokens":112,"prompt_tokens_details":{"cached_tokens":64}},
					"timing":{"total_ms":40.5,"first_token_ms":20.25}}`)
			}))
			defer srv.Close()
			c := client.New(srv.URL+"/", client.WithAPIKey(tt.apiKey))
			got, err := c.NextAction(context.Background(), request)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, response) {
				t.Errorf("got %+v, want %+v", *got, response)
			}
		})
	}
}

func TestNextActionErrors(t *testing.T) {
	t.Parallel()
	future := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	param, code := "history[0].action.type", "queue_full"
	tests := []struct {
		name       string
		status     int
		header     map[string]string
		body       string
		want       nextaction.APIError
		retryAfter [2]time.Duration // inclusive range
		retryable  bool
		text       string // substring of Error()
	}{
		{
			name: "bad request names the field", status: 400,
			body: `{"error":{"message":"unknown action type \"jump\"","type":"invalid_request_error","param":"history[0].action.type","code":null}}`,
			want: nextaction.APIError{Message: `unknown action type "jump"`, Type: "invalid_request_error", Param: &param},
			text: `nextact: 400 Bad Request: unknown action type "jump" (param history[0].action.type)`,
		},
		{
			name: "overloaded with seconds", status: 503, header: map[string]string{"Retry-After": "2"},
			body:       `{"error":{"message":"at capacity","type":"overloaded","param":null,"code":"queue_full"}}`,
			want:       nextaction.APIError{Message: "at capacity", Type: "overloaded", Code: &code},
			retryAfter: [2]time.Duration{2 * time.Second, 2 * time.Second}, retryable: true,
			text: "(code queue_full, retry after 2s)",
		},
		{
			name: "too many requests with a date", status: 429, header: map[string]string{"Retry-After": future},
			body:       `{"error":{"message":"slow down","type":"rate_limit","param":null,"code":null}}`,
			want:       nextaction.APIError{Message: "slow down", Type: "rate_limit"},
			retryAfter: [2]time.Duration{80 * time.Second, 90 * time.Second}, retryable: true,
		},
		{
			name: "invalid retry-after", status: 503, header: map[string]string{"Retry-After": "soon"},
			body: `{"error":{"message":"x","type":"server_error"}}`, want: nextaction.APIError{Message: "x", Type: "server_error"}, retryable: true,
		},
		{
			name: "date in the past", status: 503, header: map[string]string{"Retry-After": "Mon, 02 Jan 2006 15:04:05 GMT"},
			body: `{"error":{"message":"x","type":"server_error"}}`, want: nextaction.APIError{Message: "x", Type: "server_error"}, retryable: true,
		},
		{
			name: "body not JSON", status: 502, body: "  upstream went away\n",
			want: nextaction.APIError{Message: "upstream went away"}, text: "nextact: 502 Bad Gateway: upstream went away",
		},
		{
			name: "empty body", status: 404,
			want: nextaction.APIError{Message: "Not Found"},
		},
		{
			name: "long body is cut", status: 500, body: strings.Repeat("x", 2000),
			want: nextaction.APIError{Message: strings.Repeat("x", 512) + "..."},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			resp, err := client.New(srv.URL).NextAction(context.Background(), request)
			e, ok := err.(*client.APIError)
			if !ok {
				t.Fatalf("NextAction = %v, %v; want an *APIError, unwrapped", resp, err)
			}
			if e.Status != tt.status || !reflect.DeepEqual(e.Err, tt.want) {
				t.Errorf("got status %d, %+v; want %d, %+v", e.Status, e.Err, tt.status, tt.want)
			}
			if e.RetryAfter < tt.retryAfter[0] || e.RetryAfter > tt.retryAfter[1] {
				t.Errorf("RetryAfter = %v, want within %v", e.RetryAfter, tt.retryAfter)
			}
			if e.Retryable() != tt.retryable {
				t.Errorf("Retryable = %v, want %v", e.Retryable(), tt.retryable)
			}
			if !strings.Contains(e.Error(), tt.text) {
				t.Errorf("Error() = %q, want it to contain %q", e.Error(), tt.text)
			}
		})
	}
}

func TestNextActionBadSuccessBody(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"action":`)
	}))
	defer srv.Close()
	_, err := client.New(srv.URL).NextAction(context.Background(), request)
	var e *client.APIError
	if err == nil || errors.As(err, &e) || !strings.Contains(err.Error(), "next action: decode response") {
		t.Fatalf("err = %v, want a decode error", err)
	}
}

func TestNextActionCancel(t *testing.T) {
	t.Parallel()
	arrived, release := make(chan struct{}), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		close(arrived)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-arrived
		cancel()
	}()
	done := make(chan error, 1)
	go func() {
		_, err := client.New(srv.URL).NextAction(ctx, request)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("NextAction did not return after cancel")
	}
}

func TestWithHTTPClient(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"object":"list","data":[]}`)
	}))
	defer srv.Close()
	var calls atomic.Int32
	hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		calls.Add(1)
		return http.DefaultTransport.RoundTrip(r)
	})}
	if _, err := client.New(srv.URL, client.WithHTTPClient(hc)).Models(context.Background()); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 1 {
		t.Errorf("custom client used %d times, want 1", calls.Load())
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestModels(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		status  int
		body    string
		want    []string
		wantErr string
	}{
		{"two", 200, `{"object":"list","data":[{"id":"shopper-7b","object":"model","created":0,"owned_by":"nextact"},{"id":"tiny"}]}`, []string{"shopper-7b", "tiny"}, ""},
		{"none", 200, `{"object":"list","data":[]}`, []string{}, ""},
		{"unauthorized", 401, `{"error":{"message":"bad key","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`, nil, "nextact: 401 Unauthorized: bad key (code invalid_api_key)"},
		{"garbage", 200, `[`, nil, "models: decode response"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodGet || r.URL.Path != "/v1/models" || r.Header.Get("Authorization") != "Bearer k" {
					http.Error(w, "wrong request", http.StatusTeapot)
					return
				}
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			got, err := client.New(srv.URL, client.WithAPIKey("k")).Models(context.Background())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Models = %q, %v; want error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Models = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
