package worker

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/proxyq/proxyq/proxyclient"
	"github.com/proxyq/proxyq/tasks"
)

// proxyMessage is a proxy:send_interaction message: the send policy's operations on Twilio
// Proxy (see sender.go). Reconciliation matches body, media and time and needs claims
// (reconcile.go).
type proxyMessage struct {
	p      tasks.Payload
	client ProxyAPI // bound by bind
}

func decodeProxy(data []byte) (message, error) {
	p, err := tasks.Decode(data)
	if err != nil {
		return nil, err
	}
	return &proxyMessage{p: p}, nil
}

func (m *proxyMessage) api() string           { return apiProxy }
func (m *proxyMessage) shared() tasks.Payload { return m.p }

func (m *proxyMessage) bind(h *Handler) (accountClient, error) {
	api, err := h.clientFor(m.p)
	if err != nil {
		return nil, err
	}
	m.client = api
	return api, nil
}

func (m *proxyMessage) create(ctx context.Context, _ string) (created, error) {
	mi, err := m.client.CreateMessageInteraction(ctx, proxyclient.CreateParams{
		ServiceSID: m.p.ServiceSID, SessionSID: m.p.SessionSID, ParticipantSID: m.p.ParticipantSID,
		Body: m.p.Body, MediaURLs: m.p.MediaURLs,
	})
	if err != nil {
		return created{}, err
	}
	return interactionCreated(mi), nil
}

func interactionCreated(mi *proxyclient.MessageInteraction) created {
	return created{SID: mi.SID, AccountSID: mi.AccountSID, Status: mi.OutboundResourceStatus,
		ResourceSID: mi.OutboundResourceSID, DateCreated: mi.DateCreated}
}

func (m *proxyMessage) find(ctx context.Context, r *run) (found, error) {
	res, err := r.findCandidates(ctx, r.id, m.p, r.own.StartedAt, r.own.Now)
	if err != nil {
		return found{}, err
	}
	out := found{Candidates: make([]created, len(res.Candidates))}
	for i := range res.Candidates {
		out.Candidates[i] = interactionCreated(&res.Candidates[i])
	}
	if res.Truncated {
		out.Inconclusive = fmt.Sprintf("the participant has more than %d pages of interactions and none of those read matched", r.cfg.ReconcileMaxPages)
	}
	return out, nil
}

func (m *proxyMessage) classify(err error) proxyclient.Class { return proxyclient.Classify(err) }

func (m *proxyMessage) retryAfter(err error) (time.Duration, bool) {
	return proxyclient.RetryAfter(err)
}

func (m *proxyMessage) handling(err error) (failure, mayBeInProgress bool) {
	return retryLaterHandling(err)
}

// scopeThrottled: 80621 slows the Service (its own factor); anything else (20429, a bare 429)
// slows the account.
func (m *proxyMessage) scopeThrottled(err error) (scope, slowAccount bool) {
	if info, _ := proxyclient.Explain(err); info.Scope == proxyclient.ScopeService {
		return true, false
	}
	return false, true
}

func (m *proxyMessage) limitScope() string      { return m.p.ServiceSID }
func (m *proxyMessage) claimsInteraction() bool { return true }

func (m *proxyMessage) record(c created, o *tasks.Outcome) {
	o.InteractionSID, o.OutboundStatus, o.OutboundResourceSID = c.SID, c.Status, c.ResourceSID
}

func (m *proxyMessage) logFields() []zap.Field {
	return []zap.Field{zap.String("participant_sid", m.p.ParticipantSID)}
}

func (m *proxyMessage) trace(span trace.Span) {
	traceMessage(span, &m.p)
	if span.IsRecording() {
		span.SetAttributes(AttrAPI.String(apiProxy))
	}
}
