package jsonstr_test

import (
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/nextact/nextact/internal/jsonstr"
)

func TestAppend(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
	}{
		{"empty", ""},
		{"ascii", "hello world"},
		{"quotes and backslashes", `say "hi" \ bye`},
		{"controls", "a\nb\rc\td\x00e\x1f"},
		{"html", "<a href='x'>&amp;</a>"},
		{"multibyte", "héllo 世界 🎉"},
		{"line separators", "a\u2028b\u2029c"},
		{"invalid utf8", "a\xffb\xc3"},
		{"truncated rune", "\xe4\xb8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := jsonstr.Append([]byte("x"), tt.in)
			if got[0] != 'x' {
				t.Fatalf("prefix lost: %q", got)
			}
			var back string
			if err := json.Unmarshal(got[1:], &back); err != nil {
				t.Fatalf("invalid JSON %q: %v", got[1:], err)
			}
			want, _ := json.Marshal(tt.in) // encoding/json's view of the same string
			var wantBack string
			_ = json.Unmarshal(want, &wantBack)
			if back != wantBack || !utf8.ValidString(back) {
				t.Errorf("round trip %q, want %q", back, wantBack)
			}
		})
	}
}
