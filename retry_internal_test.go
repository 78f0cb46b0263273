package agentpg

import (
	"testing"
	"time"
)

// A zero RetryConfig gets the defaults; setting one backoff alone adjusts
// the other's default so that the config stays valid.
func TestRetryConfigDefaults(t *testing.T) {
	t.Parallel()
	cases := map[string]struct{ in, want RetryConfig }{
		"zero": {RetryConfig{}, RetryConfig{
			MaxAttempts: DefaultRetryMaxAttempts, InitialBackoff: DefaultRetryInitialBackoff,
			MaxBackoff: DefaultRetryMaxBackoff, MaxElapsed: DefaultRetryMaxElapsed,
		}},
		"off": {RetryConfig{MaxAttempts: 1}, RetryConfig{
			MaxAttempts: 1, InitialBackoff: DefaultRetryInitialBackoff,
			MaxBackoff: DefaultRetryMaxBackoff, MaxElapsed: DefaultRetryMaxElapsed,
		}},
		"short max": {RetryConfig{MaxBackoff: time.Millisecond}, RetryConfig{
			MaxAttempts: DefaultRetryMaxAttempts, InitialBackoff: time.Millisecond,
			MaxBackoff: time.Millisecond, MaxElapsed: DefaultRetryMaxElapsed,
		}},
		"long initial": {RetryConfig{InitialBackoff: time.Minute}, RetryConfig{
			MaxAttempts: DefaultRetryMaxAttempts, InitialBackoff: time.Minute,
			MaxBackoff: time.Minute, MaxElapsed: DefaultRetryMaxElapsed,
		}},
	}
	for name, tc := range cases {
		if got := (Config{Retry: tc.in}).withDefaults().Retry; got != tc.want {
			t.Errorf("%s: %+v, want %+v", name, got, tc.want)
		}
	}
}
