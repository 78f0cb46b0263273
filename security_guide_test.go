package agentpg_test

// The code samples of docs/security.md, compiled and exercised. Each sample
// is written here as the guide shows it; the helpers it calls (isAllowedPath,
// fetchURL, ...) are ones an application would provide, implemented safely.

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpg/agentpg"
	"github.com/agentpg/agentpg/agentpgtest"
	"github.com/agentpg/agentpg/audit"
	"github.com/agentpg/agentpg/redact"
	"github.com/agentpg/agentpg/tool"
	"github.com/agentpg/agentpg/tool/builtin"
)

// --- API keys -------------------------------------------------------------

func guideClients() []anthropic.Client {
	// Good - from environment
	client := anthropic.NewClient() // Reads ANTHROPIC_API_KEY

	// Good - explicit environment variable
	explicit := anthropic.NewClient(
		option.WithAPIKey(os.Getenv("ANTHROPIC_API_KEY")),
	)
	return []anthropic.Client{client, explicit}
}

// --- Database connections -----------------------------------------------

func guidePoolConfig(databaseURL string) (*pgxpool.Config, error) {
	config, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, err
	}
	// Limit connections to prevent resource exhaustion
	config.MaxConns = 25
	config.MinConns = 5
	// Set connection lifetime
	config.MaxConnLifetime = time.Hour
	config.MaxConnIdleTime = 30 * time.Minute
	return config, nil
}

// SecretReader is what a secret manager client offers, such as Google's
// secretmanager.Client or AWS's secretsmanager.Client behind a small adapter.
type SecretReader interface {
	AccessSecret(ctx context.Context, name string) ([]byte, error)
}

func getDatabaseURL(ctx context.Context, secrets SecretReader) (string, error) {
	data, err := secrets.AccessSecret(ctx, "projects/my-project/secrets/database-url/versions/latest")
	if err != nil {
		return "", fmt.Errorf("reading the database URL: %w", err)
	}
	return string(data), nil
}

type staticSecrets map[string]string

func (s staticSecrets) AccessSecret(_ context.Context, name string) ([]byte, error) {
	v, ok := s[name]
	if !ok {
		return nil, errors.New("no such secret")
	}
	return []byte(v), nil
}

func TestGuideDatabaseSamples(t *testing.T) {
	t.Parallel()
	if got := len(guideClients()); got != 2 {
		t.Fatal(got)
	}
	// Always use SSL/TLS in production
	for _, databaseURL := range []string{
		"postgres://user:pass@host:5432/db?sslmode=require",
		"postgres://user:pass@host:5432/db?sslmode=verify-full&sslrootcert=/path/to/ca.crt",
	} {
		if strings.Contains(databaseURL, "verify-full") {
			continue // parsing verify-full reads the CA file
		}
		config, err := guidePoolConfig(databaseURL)
		if err != nil {
			t.Fatal(err)
		}
		if config.ConnConfig.TLSConfig == nil || config.MaxConns != 25 {
			t.Fatalf("sslmode=require gave no TLS config: %+v", config.ConnConfig.TLSConfig)
		}
	}
	secrets := staticSecrets{"projects/my-project/secrets/database-url/versions/latest": "postgres://db/app?sslmode=require"}
	if u, err := getDatabaseURL(t.Context(), secrets); err != nil || !strings.HasPrefix(u, "postgres://") {
		t.Fatalf("%q %v", u, err)
	}

	// For custom queries, always use parameters.
	b := setup(t)
	pool := b.db
	tenantID := "company-a' OR '1'='1"
	b.session(t, "company-a", "user-1")
	rows, err := pool.Query(ctx(t), "SELECT * FROM agentpg.sessions WHERE tenant_id = $1", tenantID)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		n++
	}
	if rows.Close(); n != 0 {
		t.Fatalf("an injected tenant id matched %d sessions", n)
	}
}

// --- Tenant isolation ---------------------------------------------------

var guideAgent *agentpg.Agent // the guide's `agent`

func isValidTenant(tenantID string) bool { return tenantID == "company-a" || tenantID == "company-b" }

func getUserFromToken(r *http.Request) string {
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer user:")
}

func userBelongsToTenant(userID, tenantID string) bool {
	return userID == "user-1" && tenantID == "company-a"
}

func handleRequest(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	tenantID := r.Header.Get("X-Tenant-ID")
	// Validate tenant ID
	if !isValidTenant(tenantID) {
		http.Error(w, "Invalid tenant", http.StatusForbidden)
		return
	}
	// Verify user belongs to tenant
	userID := getUserFromToken(r)
	if !userBelongsToTenant(userID, tenantID) {
		http.Error(w, "Access denied", http.StatusForbidden)
		return
	}
	sess, err := guideAgent.LoadSessionByIdentifier(ctx, tenantID, userID)
	if err != nil {
		http.Error(w, "Not found", http.StatusNotFound)
		return
	}
	fmt.Fprint(w, sess.ID)
}

func TestGuideTenantSamples(t *testing.T) {
	b := setup(t)
	guideAgent = b.agent
	agent := b.agent
	// Sessions are isolated by tenant
	a, _ := agent.NewSession(ctx(t), "company-a", "user-1", nil) // Company A only
	o, _ := agent.NewSession(ctx(t), "company-b", "user-1", nil) // Company B only (separate)
	if a == nil || o == nil || a.ID == o.ID {
		t.Fatal("tenants share a session")
	}
	srv := httptest.NewServer(http.HandlerFunc(handleRequest))
	defer srv.Close()
	for _, tc := range []struct {
		tenant, user string
		status       int
	}{
		{"company-a", "user-1", http.StatusOK},
		{"company-b", "user-1", http.StatusForbidden}, // user-1 does not belong to company-b
		{"company-z", "user-1", http.StatusForbidden},
		{"", "user-1", http.StatusForbidden},
	} {
		req, _ := http.NewRequest("GET", srv.URL, nil)
		req.Header.Set("X-Tenant-ID", tc.tenant)
		req.Header.Set("Authorization", "Bearer user:"+tc.user)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("tenant %q: status %d, want %d", tc.tenant, resp.StatusCode, tc.status)
		}
	}
	// The guide's SQL: session queries include tenant_id; messages are
	// reached through their tenant's sessions.
	var count int
	err := b.db.QueryRow(ctx(t), `SELECT count(*) FROM agentpg.messages m
		JOIN agentpg.sessions s ON m.session_id = s.id
		WHERE s.tenant_id = $1`, "company-b").Scan(&count)
	if err != nil || count != 0 {
		t.Fatalf("%d, %v", count, err)
	}
}

// --- Tool input validation ----------------------------------------------

func guideURLSchema() tool.ToolSchema {
	// Schema validation happens automatically
	schema := tool.ToolSchema{
		Type: "object",
		Properties: map[string]tool.PropertyDef{
			"url": {
				Type:        "string",
				Description: "URL to fetch",
				// Pattern validation could be added
			},
		},
		Required: []string{"url"},
	}
	return schema
}

// FileWriteTool is the guide's sample of a tool doing something dangerous.
type FileWriteTool struct{}

var allowedDir string // set by the test to a temporary directory

func (t *FileWriteTool) Name() string                 { return "write_file" }
func (t *FileWriteTool) Description() string          { return "Writes a file under the allowed directory." }
func (t *FileWriteTool) InputSchema() tool.ToolSchema { return pathContentSchema }

var pathContentSchema = tool.ToolSchema{
	Type: "object",
	Properties: map[string]tool.PropertyDef{
		"path":    {Type: "string", Description: "Absolute path under the allowed directory"},
		"content": {Type: "string"},
	},
	Required: []string{"path", "content"},
}

func (t *FileWriteTool) Execute(ctx context.Context, input json.RawMessage) (string, error) {
	var params struct {
		Path    string `json:"path"`
		Content string `json:"content"`
	}
	json.Unmarshal(input, &params)
	// Validate path
	if !isAllowedPath(params.Path) {
		return "", fmt.Errorf("path not allowed: %s", params.Path)
	}
	// Check path traversal
	cleanPath := filepath.Clean(params.Path)
	if strings.Contains(cleanPath, "..") {
		return "", fmt.Errorf("path traversal not allowed")
	}
	// Ensure within allowed directory
	if !strings.HasPrefix(cleanPath, allowedDir) {
		return "", fmt.Errorf("path outside allowed directory")
	}
	return writeFile(cleanPath, params.Content)
}

// isAllowedPath accepts absolute paths strictly inside allowedDir, checked
// component-wise (a plain prefix test would let "/data-evil" pass for
// "/data").
func isAllowedPath(p string) bool {
	if !filepath.IsAbs(p) || strings.ContainsRune(p, 0) {
		return false
	}
	rel, err := filepath.Rel(allowedDir, filepath.Clean(p))
	return err == nil && rel != "." && !strings.HasPrefix(rel, "..") && !filepath.IsAbs(rel)
}

// writeFile writes through an os.Root, so a symlink inside the directory
// cannot lead outside it either.
func writeFile(path, content string) (string, error) {
	root, err := os.OpenRoot(allowedDir)
	if err != nil {
		return "", err
	}
	defer root.Close()
	rel, _ := filepath.Rel(allowedDir, path)
	if err := root.WriteFile(rel, []byte(content), 0o600); err != nil {
		return "", err
	}
	return fmt.Sprintf("wrote %d bytes", len(content)), nil
}

// ShellTool is the guide's bad example: it hands the model a shell.
type ShellTool struct{}

func (t *ShellTool) Execute(ctx context.Context, input json.RawMessage) (string, error) {
	var params struct {
		Command string `json:"command"`
	}
	json.Unmarshal(input, &params)
	// DON'T DO THIS
	out, _ := exec.Command("sh", "-c", params.Command).Output()
	return string(out), nil
}

// SafeShellTool is the guide's good example: an allowlist of commands.
type SafeShellTool struct{}

func (t *SafeShellTool) Name() string        { return "safe_shell" }
func (t *SafeShellTool) Description() string { return "Runs an allowlisted action." }
func (t *SafeShellTool) InputSchema() tool.ToolSchema {
	return tool.ToolSchema{Type: "object", Properties: map[string]tool.PropertyDef{
		"action": {Type: "string", Enum: []any{"list_files", "disk_usage", "date"}},
		"args":   {Type: "array", Items: &tool.PropertyDef{Type: "string", Pattern: `^[A-Za-z0-9._+-]*$`}},
	}, Required: []string{"action"}}
}

func (t *SafeShellTool) Execute(ctx context.Context, input json.RawMessage) (string, error) {
	var params struct {
		Action string   `json:"action"`
		Args   []string `json:"args"`
	}
	json.Unmarshal(input, &params)
	// Allowlist of safe actions
	allowedActions := map[string]string{
		"list_files": "ls",
		"disk_usage": "du",
		"date":       "date",
	}
	cmd, ok := allowedActions[params.Action]
	if !ok {
		return "", fmt.Errorf("action not allowed: %s", params.Action)
	}
	// Execute with validated command
	out, _ := exec.Command(cmd, params.Args...).Output()
	return string(out), nil
}

// HTTPTool is the guide's sample of an outbound HTTP tool.
type HTTPTool struct{ fetcher *builtin.HTTPFetch }

func (t *HTTPTool) Name() string                 { return "fetch" }
func (t *HTTPTool) Description() string          { return "Fetches an HTTPS URL." }
func (t *HTTPTool) InputSchema() tool.ToolSchema { return guideURLSchema() }

func (t *HTTPTool) Execute(ctx context.Context, input json.RawMessage) (string, error) {
	var params struct {
		URL string `json:"url"`
	}
	json.Unmarshal(input, &params)
	// Parse and validate URL
	u, err := url.Parse(params.URL)
	if err != nil {
		return "", fmt.Errorf("invalid URL")
	}
	// Only allow HTTPS
	if u.Scheme != "https" {
		return "", fmt.Errorf("only HTTPS URLs allowed")
	}
	// Block internal IPs (SSRF prevention)
	if isInternalIP(u.Host) {
		return "", fmt.Errorf("internal URLs not allowed")
	}
	// Block sensitive domains
	if isSensitiveDomain(u.Host) {
		return "", fmt.Errorf("domain not allowed")
	}
	return t.fetchURL(ctx, params.URL)
}

// isInternalIP reports whether host is an IP literal that is not public.
// Names are checked where it matters, at dial time, by fetchURL.
func isInternalIP(host string) bool {
	h := host
	if sh, _, err := net.SplitHostPort(host); err == nil {
		h = sh
	}
	addr, err := netip.ParseAddr(strings.Trim(h, "[]"))
	if err != nil {
		return false
	}
	addr = addr.Unmap()
	return addr.IsLoopback() || addr.IsPrivate() || addr.IsLinkLocalUnicast() || addr.IsUnspecified() || addr.IsMulticast()
}

func isSensitiveDomain(host string) bool {
	return host == "metadata.google.internal" || strings.HasSuffix(host, ".internal")
}

// fetchURL goes through builtin.HTTPFetch, which checks the resolved
// address of every connection, redirects included.
func (t *HTTPTool) fetchURL(ctx context.Context, rawURL string) (string, error) {
	input, _ := json.Marshal(map[string]string{"url": rawURL})
	return t.fetcher.Execute(ctx, input)
}

func TestGuideToolSamples(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	allowedDir = filepath.Join(dir, "data")
	if err := os.Mkdir(allowedDir, 0o700); err != nil {
		t.Fatal(err)
	}
	fetcher, err := builtin.NewHTTPFetch(builtin.HTTPFetchConfig{AllowedHosts: []string{"example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	// Every sample registers: names and schemas are valid.
	reg, err := tool.NewRegistry(&FileWriteTool{}, &SafeShellTool{}, &HTTPTool{fetcher: fetcher})
	if err != nil {
		t.Fatal(err)
	}
	executor := tool.NewExecutor(reg)
	executor.SetDefaultTimeout(30 * time.Second)

	outside := filepath.Join(dir, "data-evil", "x")
	calls := []tool.Call{
		{ID: "ok", Name: "write_file", Input: json.RawMessage(fmt.Sprintf(`{"path":%q,"content":"hi"}`, filepath.Join(allowedDir, "note.txt")))},
		{ID: "traversal", Name: "write_file", Input: json.RawMessage(fmt.Sprintf(`{"path":%q,"content":"x"}`, allowedDir+"/../escape.txt"))},
		{ID: "prefix", Name: "write_file", Input: json.RawMessage(fmt.Sprintf(`{"path":%q,"content":"x"}`, outside))},
		{ID: "missing", Name: "write_file", Input: json.RawMessage(`{"path":"/tmp/x"}`)},
		{ID: "action", Name: "safe_shell", Input: json.RawMessage(`{"action":"rm","args":["-rf","/"]}`)},
		{ID: "inject", Name: "safe_shell", Input: json.RawMessage(`{"action":"date","args":["; touch pwned"]}`)},
		{ID: "http", Name: "fetch", Input: json.RawMessage(`{"url":"http://example.com/"}`)},
		{ID: "metadata", Name: "fetch", Input: json.RawMessage(`{"url":"https://169.254.169.254/latest/meta-data"}`)},
		{ID: "loopback", Name: "fetch", Input: json.RawMessage(`{"url":"https://[::ffff:127.0.0.1]/"}`)},
		{ID: "sensitive", Name: "fetch", Input: json.RawMessage(`{"url":"https://metadata.google.internal/"}`)},
		{ID: "not allowed", Name: "fetch", Input: json.RawMessage(`{"url":"https://evil.example/"}`)},
	}
	results := executor.Execute(t.Context(), calls)
	if results[0].IsError || results[0].Output != "wrote 2 bytes" {
		t.Fatalf("allowed write: %+v", results[0])
	}
	for _, res := range results[1:] {
		if !res.IsError {
			t.Errorf("%s: not refused: %q", res.ID, res.Output)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "escape.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Error("the traversal wrote outside the directory")
	}
	if _, err := os.Stat(outside); !errors.Is(err, os.ErrNotExist) {
		t.Error("the prefix trick wrote outside the directory")
	}

	// Why the guide forbids ShellTool: the model's input is a shell command.
	marker := filepath.Join(dir, "pwned")
	(&ShellTool{}).Execute(t.Context(), json.RawMessage(fmt.Sprintf(`{"command":"echo hi > %s"}`, marker)))
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("the bad sample was expected to be exploitable: %v", err)
	}
}

// --- Sensitive data filtering and audit --------------------------------

// containsPII is the guide's helper, on package redact's detectors.
func containsPII(msg any) bool {
	m, ok := msg.(agentpg.Message)
	return ok && len(redact.Find(m.Text())) > 0
}

func installGuideHooks(agent *agentpg.Agent) {
	agent.OnBeforeMessage(func(ctx context.Context, messages []any) error {
		for _, msg := range messages {
			if containsPII(msg) {
				return fmt.Errorf("PII detected - request blocked")
			}
		}
		return nil
	})
	auditLog := agent.AuditLog()
	agent.OnToolCall(func(ctx context.Context, name string, input json.RawMessage, output string, err error) error {
		auditLog.Record(audit.Entry{
			Timestamp: time.Now(),
			UserID:    ctx.Value("user_id").(string),
			TenantID:  ctx.Value("tenant_id").(string),
			Action:    "tool_call",
			Tool:      name,
			Input:     string(input),
			Success:   err == nil,
		})
		return nil
	})
}

func TestGuideHookSamples(t *testing.T) {
	t.Parallel()
	safe := &SafeShellTool{}
	b := setup(t, func(c *agentpg.Config) { c.Tools = []tool.Tool{safe} })
	agent := b.agent
	installGuideHooks(agent)
	executor := agent.Executor()
	// Tool executor timeout
	executor.SetDefaultTimeout(30 * time.Second)

	sess := b.session(t, "company-a", "user-1")
	callCtx := context.WithValue(context.WithValue(ctx(t), "user_id", "user-1"), "tenant_id", "company-a") //nolint:staticcheck // as in the guide
	if _, err := sess.Run(callCtx, "My SSN is 078-05-1120"); err == nil || !strings.Contains(err.Error(), "PII detected") {
		t.Fatalf("PII not blocked: %v", err)
	}
	b.model.Push(
		agentpgtest.Blocks(agentpgtest.ToolUse("toolu_1", "safe_shell", map[string]any{"action": "date"}),
			agentpgtest.ToolUse("toolu_2", "safe_shell", map[string]any{"action": "format_disk"})),
		agentpgtest.Text("done"),
	)
	if _, err := sess.Run(callCtx, "what's the date?"); err != nil {
		t.Fatal(err)
	}
	if err := agent.Close(ctx(t)); err != nil { // writes the buffered entries
		t.Fatal(err)
	}
	auditLog := agent.AuditLog()
	mine, err := auditLog.List(ctx(t), "company-a", audit.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(mine) != 2 || mine[0].UserID != "user-1" || mine[0].Action != "tool_call" || mine[0].Tool != "safe_shell" ||
		!mine[0].Success || mine[1].Success || mine[1].Input != `{"action":"format_disk"}` {
		t.Fatalf("audit entries %+v", mine)
	}
	if err := auditLog.Verify(ctx(t), "company-a"); err != nil {
		t.Fatal(err)
	}
}

// --- Audit logging ------------------------------------------------------

var cardNumber = regexp.MustCompile(`\b\d{4}(?: ?\d{4}){3}\b`)

// redactCards is the Redact function of the guide's audited agent.
func redactCards(s string) string { return cardNumber.ReplaceAllString(s, "[card]") }

// runAuditedAgent is the guide's audited agent, given to work until it
// returns.
func runAuditedAgent(ctx context.Context, pool *pgxpool.Pool, client anthropic.Client, work func(*agentpg.Agent) error) error {
	agent, err := agentpg.New(agentpg.Config{
		DB:     pool,
		Client: &client,
		Model:  "claude-sonnet-5-5",
		Audit: agentpg.AuditConfig{
			Enabled: true,
			Redact:  redactCards, // keeps secrets and personal data out of inputs and notes
			Actor:   func(ctx context.Context) string { id, _ := ctx.Value("user_id").(string); return id },
		},
	})
	if err != nil {
		return err
	}
	defer agent.Close(ctx) // writes the entries still buffered

	return work(agent)
}

func guideVerify(ctx context.Context, agent *agentpg.Agent, alert func(tenantID string, seq int64, reason string)) {
	if err := agent.AuditLog().Verify(ctx, "company-a"); errors.Is(err, audit.ErrChainBroken) {
		var broken *audit.ChainError
		errors.As(err, &broken)
		alert(broken.TenantID, broken.Seq, broken.Reason)
	}
}

func guideErase(ctx context.Context, agent *agentpg.Agent) (int, error) {
	erased, err := agent.AuditLog().Erase(ctx, "company-a", "user-1", "dpo@company-a")
	return erased, err
}

func TestGuideAuditSamples(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var agent *agentpg.Agent
	err := runAuditedAgent(ctx(t), b.db, *b.model.Client(), func(a *agentpg.Agent) error {
		agent = a
		sess, err := a.NewSession(ctx(t), "company-a", "user-1", nil)
		if err != nil {
			return err
		}
		if err := a.DeleteSession(context.WithValue(ctx(t), "user_id", "alice"), "company-a", sess.ID); err != nil { //nolint:staticcheck // as in the guide
			return err
		}
		// An entry of the application's own, through the same log.
		return a.AuditLog().Record(audit.Entry{TenantID: "company-a", UserID: "user-1", Action: "payment",
			Input: "card 4111 1111 1111 1111"})
	})
	if err != nil {
		t.Fatal(err)
	}
	entries, err := agent.AuditLog().List(ctx(t), "company-a", audit.ListOptions{})
	if err != nil || len(entries) != 2 || entries[0].Action != audit.ActionSessionDelete || entries[0].Actor != "alice" ||
		entries[1].Input != "card [card]" {
		t.Fatalf("entries %+v %v", entries, err)
	}
	alerted := func(tenantID string, seq int64, reason string) { t.Errorf("alert: %s %d %s", tenantID, seq, reason) }
	guideVerify(ctx(t), agent, alerted)

	if erased, err := guideErase(ctx(t), agent); err != nil || erased != 1 {
		t.Fatalf("Erase: %d %v", erased, err)
	}
	guideVerify(ctx(t), agent, alerted)

	// The export the guide's script reads, as written (but for \copy).
	var exported int
	err = b.db.QueryRow(ctx(t), `SELECT count(*) FROM (SELECT tenant_id, seq, (extract(epoch FROM occurred_at) * 1000000)::bigint,
  action, tool, success, user_id, session_id, run_id, actor, input, detail, encode(content_hash, 'hex'),
  encode(prev_hash, 'hex'), encode(hash, 'hex'), erased_at IS NOT NULL FROM agentpg.audit_log
  WHERE tenant_id = 'company-a' ORDER BY seq) AS export`).Scan(&exported)
	if err != nil || exported != 3 {
		t.Fatalf("the export: %d rows, %v", exported, err)
	}

	if _, err := b.db.Exec(ctx(t), `ALTER TABLE agentpg.audit_log DISABLE TRIGGER audit_log_append_only`); err != nil {
		t.Fatal(err)
	}
	if _, err := b.db.Exec(ctx(t), `UPDATE agentpg.audit_log SET success = NOT success WHERE seq = 1`); err != nil {
		t.Fatal(err)
	}
	var alert []any
	guideVerify(ctx(t), agent, func(tenantID string, seq int64, reason string) { alert = []any{tenantID, seq} })
	if fmt.Sprint(alert) != "[company-a 1]" {
		t.Errorf("a changed entry raised %v", alert)
	}
}

// --- Network security ---------------------------------------------------

func guideHTTPClients() []*http.Client {
	// For custom HTTP clients used in tools
	tlsConfig := &tls.Config{
		MinVersion: tls.VersionTLS12,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		},
	}
	client := &http.Client{
		Transport: &http.Transport{
			TLSClientConfig: tlsConfig,
		},
	}
	// Always set timeouts
	withTimeout := &http.Client{
		Timeout: 30 * time.Second,
	}
	return []*http.Client{client, withTimeout}
}

func TestGuideNetworkSamples(t *testing.T) {
	t.Parallel()
	clients := guideHTTPClients()
	if clients[0].Transport.(*http.Transport).TLSClientConfig.MinVersion != tls.VersionTLS12 || clients[1].Timeout != 30*time.Second {
		t.Fatal("samples changed")
	}
	// A TLS 1.1-only server is refused by the sample's client.
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.TLS = &tls.Config{MaxVersion: tls.VersionTLS11}
	srv.StartTLS()
	defer srv.Close()
	clients[0].Transport.(*http.Transport).TLSClientConfig.InsecureSkipVerify = true // the test server's certificate is self-signed
	if _, err := clients[0].Get(srv.URL); err == nil {
		t.Fatal("a TLS 1.1 server was accepted")
	}
}

// --- Data retention -----------------------------------------------------

func TestGuideRetentionSQL(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *agentpg.Config) { c.ContextWindow = 20000 })
	b.model.SetResponder(longAnswers(agentpgtest.Text("a summary")))
	old := buildHistory(t, b.agent, "old", 24)
	recent := b.session(t, "company-a", "recent")
	if _, err := old.Compact(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.db.Exec(ctx(t), `UPDATE agentpg.sessions SET updated_at = now() - interval '91 days' WHERE id = $1`, old.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := b.db.Exec(ctx(t), `UPDATE agentpg.message_archive SET archived_at = now() - interval '31 days'`); err != nil {
		t.Fatal(err)
	}
	var archived int
	b.db.QueryRow(ctx(t), `SELECT count(*) FROM agentpg.message_archive`).Scan(&archived)
	if archived == 0 {
		t.Fatal("nothing archived to expire")
	}

	// The guide's statements, as written.
	tag, err := b.db.Exec(ctx(t), `DELETE FROM agentpg.message_archive
WHERE archived_at < NOW() - INTERVAL '30 days'`)
	if err != nil || tag.RowsAffected() != int64(archived) {
		t.Fatalf("archive retention: %v, %v", tag, err)
	}
	if _, err := b.db.Exec(ctx(t), `DELETE FROM agentpg.sessions
WHERE updated_at < NOW() - INTERVAL '90 days'`); err != nil {
		t.Fatal(err)
	}
	if _, err := b.agent.LoadSession(ctx(t), "acme", old.ID); !errors.Is(err, agentpg.ErrSessionNotFound) {
		t.Fatalf("old session: %v", err)
	}
	var leftovers int
	b.db.QueryRow(ctx(t), `SELECT (SELECT count(*) FROM agentpg.messages WHERE session_id = $1)
		+ (SELECT count(*) FROM agentpg.runs WHERE session_id = $1)
		+ (SELECT count(*) FROM agentpg.compaction_events WHERE session_id = $1)`, old.ID).Scan(&leftovers)
	if leftovers != 0 {
		t.Fatalf("%d rows of the deleted session remain", leftovers)
	}
	if _, err := b.agent.LoadSession(ctx(t), "company-a", recent.ID); err != nil {
		t.Fatalf("recent session: %v", err)
	}
}
