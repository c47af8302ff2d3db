package eval

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/nextact/nextact/nextaction"
)

// Result is one case's line in a results file.
type Result struct {
	Case   string `json:"case"`
	Status string `json:"status"`
	// Action is the answer's action; nil when the answer held none.
	Action    *nextaction.Action `json:"action,omitempty"`
	Rationale string             `json:"rationale,omitempty"`
	// Raw is the start of an answer that held no action.
	Raw   string `json:"raw,omitempty"`
	Error string `json:"error,omitempty"`
	// Reduction is what the reduction policy did to the case's inputs.
	Reduction CaseReduction `json:"reduction"`
	// Attempts counts the requests sent (retries included); LatencyMs is
	// the time of the last one.
	Attempts         int     `json:"attempts"`
	LatencyMs        float64 `json:"latency_ms"`
	PromptTokens     int     `json:"prompt_tokens,omitempty"`
	CompletionTokens int     `json:"completion_tokens,omitempty"`
}

// resultsHeader is the first line of a results file: which run the
// results belong to.
type resultsHeader struct {
	Version     int             `json:"nextact_eval_results"`
	Fingerprint string          `json:"fingerprint"`
	Run         json.RawMessage `json:"run"`
}

const resultsVersion = 1

// maxResultLine bounds a line of a results file read back: an answer is
// read up to maxAnswerBytes, and JSON may escape each byte into six.
const maxResultLine = 6*maxAnswerBytes + 1<<20

// ResultsFile is an append-only JSONL file of results, one line per case
// as it finishes, so that an interrupted run resumes: opening an existing
// file reads what is there. Its methods are safe for concurrent use.
type ResultsFile struct {
	mu   sync.Mutex
	f    *os.File
	done map[string]Result
}

// OpenResults opens (or creates) the results file at path for the run
// whose identity is fingerprint (run describes it, for people). An
// existing file of another fingerprint is an error unless restart, which
// starts it over. A last line cut short (the process was killed while
// writing it) is dropped.
func OpenResults(path, fingerprint string, run any, restart bool) (*ResultsFile, error) {
	rf := &ResultsFile{done: map[string]Result{}}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open results: %w", err)
	}
	rf.f = f
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open results: %w", err)
	}
	if st.Size() > 0 && !restart {
		good, err := rf.read(fingerprint)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("results %s: %w", path, err)
		}
		if good < st.Size() {
			if err := f.Truncate(good); err != nil {
				f.Close()
				return nil, err
			}
		}
		if _, err := f.Seek(good, io.SeekStart); err != nil {
			f.Close()
			return nil, err
		}
		return rf, nil
	}
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, err
	}
	raw, err := json.Marshal(run)
	if err != nil {
		f.Close()
		return nil, err
	}
	if err := rf.writeLine(resultsHeader{Version: resultsVersion, Fingerprint: fingerprint, Run: raw}); err != nil {
		f.Close()
		return nil, err
	}
	return rf, nil
}

// read loads the file's results and returns the length of its complete
// lines.
func (rf *ResultsFile) read(fingerprint string) (int64, error) {
	rd := bufio.NewReaderSize(rf.f, 1<<20)
	var off int64
	for n := 1; ; n++ {
		line, err := readLine(rd, maxResultLine)
		complete := err == nil
		if err != nil && err != io.EOF {
			return 0, fmt.Errorf("line %d: %w", n, err)
		}
		if len(bytes.TrimSpace(line)) == 0 {
			if !complete {
				return off, nil
			}
			off += int64(len(line)) + 1
			continue
		}
		if n == 1 {
			var h resultsHeader
			if json.Unmarshal(line, &h) != nil || h.Version != resultsVersion {
				return 0, errors.New("not a results file of this version")
			}
			if h.Fingerprint != fingerprint {
				return 0, fmt.Errorf("written by a run of another configuration (%s); use another --out or --restart", h.Run)
			}
		} else {
			var r Result
			if err := json.Unmarshal(line, &r); err != nil || r.Case == "" {
				if !complete {
					return off, nil // cut short by a kill: dropped
				}
				return 0, fmt.Errorf("line %d: not a result", n)
			}
			if !complete {
				return off, nil // a complete object without its newline: written again
			}
			rf.done[r.Case] = r
		}
		if !complete {
			return off, nil
		}
		off += int64(len(line)) + 1
	}
}

// Done returns the file's results by case id (the last line of a case
// wins): those read when it was opened and those appended since. The map
// must not be used while results are appended.
func (rf *ResultsFile) Done() map[string]Result { return rf.done }

// Append writes r as one line, and adds it to Done.
func (rf *ResultsFile) Append(r Result) error {
	if err := rf.writeLine(r); err != nil {
		return err
	}
	rf.mu.Lock()
	rf.done[r.Case] = r
	rf.mu.Unlock()
	return nil
}

func (rf *ResultsFile) writeLine(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	rf.mu.Lock()
	defer rf.mu.Unlock()
	if _, err := rf.f.Write(b); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}

// Close closes the file.
func (rf *ResultsFile) Close() error { return rf.f.Close() }
