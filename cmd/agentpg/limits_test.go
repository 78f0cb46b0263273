package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/agentpg/agentpg"
	"github.com/agentpg/agentpg/agentpgtest"
)

func TestLimitsCommands(t *testing.T) {
	t.Parallel()
	schema := migrated(t)
	cli := func(args ...string) result {
		t.Helper()
		return agentpgCLI(t, append(args, "--schema", schema)...)
	}
	res := cli("limits", "show", "--tenant", "acme")
	wantCode(t, res, 0)
	wantContains(t, "limits show without limits", res.stdout, `Limits of tenant "acme":`, "requests per minute", "none")

	res = cli("limits", "set", "--tenant", "acme", "--requests-per-minute", "60", "--session-tokens-per-day", "5000")
	wantCode(t, res, 0)
	wantContains(t, "limits set", res.stdout, "60", "5000")
	res = cli("limits", "set", "--tenant", "acme", "--tokens-per-day", "100000")
	wantCode(t, res, 0)
	res = cli("limits", "show", "--tenant", "acme", "--json")
	wantCode(t, res, 0)
	var shown limitsView
	if err := json.Unmarshal([]byte(res.stdout), &shown); err != nil {
		t.Fatalf("limits show --json: %v\n%s", err, res.stdout)
	}
	if want := (limitsView{"acme", 60, 100000, 0, 5000}); shown != want {
		t.Errorf("limits show --json = %+v, want %+v: set keeps the limits it is not given", shown, want)
	}
	res = cli("limits", "show", "--tenant", "globex", "--json")
	wantCode(t, res, 0)
	if err := json.Unmarshal([]byte(res.stdout), &shown); err != nil || shown != (limitsView{Tenant: "globex"}) {
		t.Errorf("another tenant's limits = %+v, %v", shown, err)
	}

	for _, bad := range [][]string{
		{"limits", "set", "--tenant", "acme"},
		{"limits", "set", "--tenant", "acme", "--requests-per-minute", "-1"},
		{"limits", "set", "--tenant", "acme", "--tokens-per-day", "lots"},
		{"limits", "set", "--requests-per-minute", "5"},
		{"limits", "show"},
	} {
		wantCode(t, cli(bad...), 2)
	}
	res = cli("limits", "set", "--tenant", "acme", "--requests-per-minute", "0", "--tokens-per-day", "0", "--session-tokens-per-day", "0")
	wantCode(t, res, 0)
	res = cli("limits", "show", "--tenant", "acme", "--json")
	if err := json.Unmarshal([]byte(res.stdout), &shown); err != nil || shown != (limitsView{Tenant: "acme"}) {
		t.Errorf("limits after setting them to 0 = %+v, %v", shown, err)
	}
}

func TestUsageCommand(t *testing.T) {
	t.Parallel()
	schema := migrated(t)
	agent, srv := testAgent(t, schema)
	srv.SetResponder(func(agentpgtest.Request) agentpgtest.Reply {
		return agentpgtest.Reply{Content: []agentpgtest.Block{agentpgtest.TextBlock("ok")},
			Usage: &agentpgtest.Usage{InputTokens: 1000, OutputTokens: 500}}
	})
	sess, err := agent.NewSession(t.Context(), "acme\u202e", "user-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := sess.Run(t.Context(), "spend"); err != nil {
			t.Fatal(err)
		}
	}
	cli := func(args ...string) result {
		t.Helper()
		return agentpgCLI(t, append(args, "--schema", schema)...)
	}
	today := time.Now().UTC().Format(time.DateOnly)
	res := cli("usage", "--tenant", "acme\u202e")
	wantCode(t, res, 0)
	// claude-test has no price.
	wantContains(t, "usage", res.stdout, today, "claude-test", "2000", "1000", "-")
	wantContains(t, "usage", res.stdout, `Usage of tenant "acme\u202e"`)
	if strings.ContainsRune(res.stdout, 0x202e) {
		t.Errorf("usage prints a raw bidi override:\n%q", res.stdout)
	}

	res = cli("usage", "--tenant", "acme\u202e", "--days", "1", "--json")
	wantCode(t, res, 0)
	var out struct {
		Tenant string `json:"tenant"`
		From   string `json:"from"`
		To     string `json:"to"`
		Days   []struct {
			Day      string        `json:"day"`
			Model    string        `json:"model"`
			Requests int64         `json:"requests"`
			Usage    agentpg.Usage `json:"usage"`
			Priced   bool          `json:"priced"`
		} `json:"days"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &out); err != nil {
		t.Fatalf("usage --json: %v\n%s", err, res.stdout)
	}
	if out.From != today || out.To != today || len(out.Days) != 1 || out.Days[0].Requests != 2 ||
		out.Days[0].Usage.InputTokens != 2000 || out.Days[0].Usage.OutputTokens != 1000 || out.Days[0].Priced {
		t.Errorf("usage --json = %+v", out)
	}
	res = cli("usage", "--tenant", "globex")
	wantCode(t, res, 0)
	wantContains(t, "usage of a tenant without any", res.stdout, `Tenant "globex" used no model`)
	for _, days := range []string{"0", "-3", "100000"} {
		wantCode(t, cli("usage", "--tenant", "acme", "--days", days), 2)
	}
}
