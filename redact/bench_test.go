package redact_test

import (
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/agentpg/agentpg/redact"
)

// prose is about 4 KB of a support conversation: mostly ordinary text
// with numbers, versions, dates, ids and code, and a few pieces to redact.
const prose = `Thanks for reaching out! I looked into the failing deploy from last night (run 0197e0c2-7b1e-7c3a-9f1e-2d4b6a8c0e1f).
The worker on host build-07 started at 2026-12-01T02:14:09Z, pulled image ghcr.io/acme/api:1.42.3 and ran the
migrations 041 to 044 in 12.7 seconds. The failure came afterwards: the health check on port 8080 timed out after
30 s, three times in a row, and the orchestrator rolled back to v1.42.2 as configured in deploy.yaml (line 118).

I went through the logs. The first error is "dial tcp 10.20.4.17:5432: connect: connection refused", which means
the database was not reachable from the new pod. The old pods kept working because they reuse connections opened
before the network policy changed. Commit 3f2a9c1d4e5b6a7f8091a2b3c4d5e6f708192a3b updated the policy and dropped
the egress rule for the database subnet; reverting it should be enough. The diff is 14 lines, see PR #4512.

About the billing question: the invoice INV-2026-000123 for 1,299.00 EUR was charged twice on 2026-11-28 because
the retry in the payment service did not send an idempotency key. Refund 2 of 2 is on its way (it can take 5 to
10 business days). The customer, Jane Doe, asked to be contacted at jane.doe@example.com or on +1 (415) 555-0142
after 5pm Pacific. Please do not paste her card number in tickets again: I removed 4111 1111 1111 1111 from the
thread and rotated the API key that was in the same message. For the record the old key started with sk-ant-api03
and was revoked at 09:12; the new one is only in the secret manager.

Performance: p50 latency went from 182 ms to 176 ms after the cache change, p99 from 1.9 s to 1.2 s. CPU is at
37% on 8 cores, memory 2.4 GiB of 4 GiB. The queue depth peaked at 1,024 jobs around 14:30 UTC and drained in
under 4 minutes. We process about 1.2 million requests per day across 3 regions (us-east-1, eu-west-1,
ap-southeast-2). Error rate is 0.03%, within the 0.1% budget for Q4.

Next steps:
1. Revert the network policy (owner: platform team, ETA today).
2. Add a readiness probe that checks the database before traffic is routed (ticket OPS-8812).
3. Make the payment retry send the same idempotency key, e.g. 550e8400-e29b-41d4-a716-446655440000, on every attempt.
4. Upgrade the Postgres client from 5.11.0 to 5.12.0, which fixes the reconnect bug (see changelog section 3.2.1).
5. Schedule the post-mortem for Thursday 2026-12-04 at 10:00; invite on-call (ext. 4417) and the billing lead.

The dashboard lives at https://grafana.internal.example.com/d/abc123/api-overview?orgId=1&from=now-24h and the
runbook at docs/runbooks/deploy-rollback.md. If anything is unclear, ping me on the #deploys channel; I'm on call
until Friday. For reference, the failing pod was api-7d9f8c6b5-x2k4p in namespace prod, node ip-10-20-3-41.

A quick summary for the customer-facing status page, which I will post once the revert is live: "Between 02:14 and
02:41 UTC on 1 December, deploys of the API were rolled back automatically after failed health checks. No data was
lost and no requests failed; latency was higher than usual for about 12 minutes." Let me know if you want to change
the wording. The incident id is INC-20261201-03 and the Slack thread is linked from the ticket.

On the security side, the access review for Q4 is due on 2026-12-15. Please confirm that the service account
deploy-bot@acme-prod.iam.gserviceaccount.com still needs write access to the artifact registry; if not, we drop it
to read-only. The SSH bastion moved to 203.0.113.10 last week, so update your ~/.ssh/config (Host bastion, Port 22,
User ops). Keys older than 180 days will be revoked on Monday, 2026-12-07 at 09:00 CET. The rotation script is
scripts/rotate_keys.sh (v2.3.0); it reads the key name from ROTATE_KEY_NAME and never prints key material, only
the fingerprint, e.g. SHA256:Zx8PqL2mN7vR4tW9yB3cD6fG1hJ5kS0aQwErTyUiOpA, which is fine to share in the ticket.

Cheers,
Sam
`

func BenchmarkRedact(b *testing.B) {
	large := strings.Repeat(prose, 100_000/len(prose)+1)[:100_000]
	for _, bc := range []struct {
		name, text string
	}{
		{"4KB", prose},
		{"100KB", large},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(bc.text)))
			for b.Loop() {
				redact.Redact(bc.text)
			}
		})
	}
}

// BenchmarkHandler measures the logging of a turn, as an Agent logs at
// debug level: a logger with the run's ids, then "run started" and "run
// completed", to a text handler writing to io.Discard, as they are
// ("plain") and through NewHandler ("redacted").
func BenchmarkHandler(b *testing.B) {
	text := slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug})
	for _, bc := range []struct {
		name    string
		handler slog.Handler
	}{
		{"plain", text},
		{"redacted", redact.NewHandler(text)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			logger := slog.New(bc.handler)
			for b.Loop() {
				log := logger.With("tenant_id", "company-a", "session_id", "0197e0c2-7b1e-7c3a-9f1e-2d4b6a8c0e1f",
					"run_id", "0197e0c2-7b1f-7000-8000-2d4b6a8c0e1f")
				log.Debug("run started")
				log.Debug("run completed", "stop_reason", "end_turn", "iterations", 1, "input_tokens", 1234, "output_tokens", 56)
			}
		})
	}
}
