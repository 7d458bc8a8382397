package worker

import (
	"context"
	"slices"
	"sort"
	"time"

	"github.com/proxyq/proxyq/proxyclient"
	"github.com/proxyq/proxyq/tasks"
)

// Reconciliation answers one question after a request whose outcome we did not see: did it
// create the interaction? Twilio Proxy has no idempotency key, so the only evidence is the
// participant's list of message interactions. (This file is Proxy's find, called through
// proxyMessage.find; Conversations' exact, stamp-based find is in sender_conversations.go.)
//
// The matching rule. An interaction is this message's candidate when all of these hold:
//   - it is on the message's service, session and participant, and its type is "message" (or empty);
//   - its decoded data has the message's body, and the same media URLs when the data lists any;
//   - it was created no earlier than the start of our last POST minus the clock-skew tolerance
//     (Twilio's date_created has one-second precision and its clock is not ours), and no later
//     than now plus that tolerance;
//   - no other message of ours has recorded it (the claimed-interactions hash).
//
// Candidates are taken oldest first (then by SID), and adoption claims the SID atomically, so
// when two of our messages with identical bodies to one participant are both being reconciled,
// each adopts a different interaction: the count of messages sent stays right even if the two
// are indistinguishable. The list's order is undocumented, so every page up to the bound is read
// before deciding; when the bound cuts the list short and nothing matched, the result is
// inconclusive and the message is archived with that reason rather than risk a second SMS.

// reconcileResult is what reconciliation concluded.
type reconcileResult struct {
	// Candidates are matching, unclaimed interactions, best first. Empty: none found.
	Candidates []proxyclient.MessageInteraction
	// Truncated: the list had more pages than we may read, and nothing matched in those we did.
	Truncated bool
}

// findCandidates lists the participant's interactions and applies the matching rule.
func (r *run) findCandidates(ctx context.Context, taskID string, p tasks.Payload, attemptStart, now time.Time) (reconcileResult, error) {
	h := r.Handler
	opt := proxyclient.ListOptions{PageSize: h.cfg.ReconcilePageSize, MaxPages: h.cfg.ReconcileMaxPages}
	if h.services != nil {
		opt.BeforePage = r.beforeListPage // each page is one request on the Service's list budget
	}
	page, err := r.msg.(*proxyMessage).client.ListMessageInteractions(ctx, p.ServiceSID, p.SessionSID, p.ParticipantSID, opt)
	if err != nil {
		return reconcileResult{}, err
	}
	matches := matchInteractions(page.Interactions, p, attemptStart, now, h.cfg.ReconcileSkew)
	if len(matches) > 0 {
		sids := make([]string, len(matches))
		for i, m := range matches {
			sids[i] = m.SID
		}
		// Claims of these interactions were made after they were created, so no earlier than
		// the matching rule's earliest creation time, and at the latest just now.
		owners, err := h.ledger.ClaimedBy(ctx, p.ParticipantSID, attemptStart.Add(-h.cfg.ReconcileSkew), h.now(), sids)
		if err != nil {
			return reconcileResult{}, err
		}
		unclaimed := matches[:0]
		for i, m := range matches {
			if owners[i] == "" || owners[i] == taskID {
				unclaimed = append(unclaimed, m)
			}
		}
		matches = unclaimed
	}
	return reconcileResult{Candidates: matches, Truncated: page.Truncated && len(matches) == 0}, nil
}

// matchInteractions applies the content and time parts of the matching rule and orders the
// candidates oldest first. It is pure, for tests.
func matchInteractions(list []proxyclient.MessageInteraction, p tasks.Payload, attemptStart, now time.Time, skew time.Duration) []proxyclient.MessageInteraction {
	earliest := attemptStart.Add(-skew)
	latest := now.Add(skew)
	var out []proxyclient.MessageInteraction
	for _, mi := range list {
		if mi.ServiceSID != p.ServiceSID || mi.SessionSID != p.SessionSID || mi.ParticipantSID != p.ParticipantSID {
			continue
		}
		if mi.Type != "" && mi.Type != "message" {
			continue
		}
		if mi.DateCreated.Before(earliest) || mi.DateCreated.After(latest) {
			continue
		}
		data, err := mi.DecodeData()
		if err != nil || data.Body != p.Body {
			continue
		}
		if len(data.MediaURLs) > 0 && !slices.Equal(data.MediaURLs, p.MediaURLs) {
			continue
		}
		out = append(out, mi)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].DateCreated.Equal(out[j].DateCreated) {
			return out[i].DateCreated.Before(out[j].DateCreated)
		}
		return out[i].SID < out[j].SID
	})
	return out
}
