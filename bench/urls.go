package bench

import (
	"bytes"
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// CheckURL checks the base URL a flag gives: required, and
// http(s)://host[:port].
func CheckURL(flag, raw string) error {
	u, err := url.Parse(raw)
	switch {
	case raw == "":
		return fmt.Errorf("%s is required", flag)
	case err != nil:
		return fmt.Errorf("%s: %w", flag, err)
	case u.Scheme != "http" && u.Scheme != "https", u.Host == "":
		return fmt.Errorf("%s %q: want http(s)://host[:port]", flag, raw)
	}
	return nil
}

// HostOf is a target's URL without its scheme, for people.
func HostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(target)"
	}
	return strings.TrimRight(u.Host+u.Path, "/")
}

// DefuseURLs makes sure no URL survives in a rendered report page as one,
// even one a server put in a model id: "//" and "http(s):" are written as
// character references (a report page has none of its own).
func DefuseURLs(page []byte) []byte {
	out := bytes.ReplaceAll(page, []byte("//"), []byte("&#47;&#47;"))
	return urlScheme.ReplaceAll(out, []byte("$1&#58;"))
}

var urlScheme = regexp.MustCompile(`(?i)(https?):`)
