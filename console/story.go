package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/proxyq/proxyq/delivery"
	"github.com/proxyq/proxyq/tasks"
	"github.com/proxyq/proxyq/worker"
)

// Event is one line of a message's timeline.
type Event struct {
	At     time.Time
	Kind   string // enqueued, attempt, waits, reconciled, created, callback, delivery-error, webhook, state
	Title  string
	Detail string
	Code   int    // a Twilio error code, shown with its meaning
	Mark   string // "duplicate" or "late" for callbacks
	Bad    bool   // shown as a failure
	SIDs   []string
}

// Story is everything the message page shows.
type Story struct {
	Status   *tasks.Status
	Info     *asynq.TaskInfo
	Origin   tasks.Origin
	TraceID  string
	Log      worker.AttemptLog
	Events   []Event
	Body     string // the redacted view, or the content once revealed
	Media    []string
	Revealed bool
	Account  string
	Answers  []delivery.WebhookAnswer // the application's answers to finished status webhooks
	// API is "proxy" or "conversations"; Conversation is a Conversations message's address.
	API          string
	Conversation *ConversationFacts
}

// ConversationFacts is what the page names of a Conversations message.
type ConversationFacts struct {
	ConversationSID, ChatServiceSID, Author string
}

// loadStory reads one message: its task (one Inspector call per queue until found), its
// attempt log (one HGET) and its status webhooks (one Inspector call per status).
func (c *Console) loadStory(ctx context.Context, id string) (*Story, error) {
	st, err := tasks.Lookup(ctx, c.insp, id)
	if err != nil {
		return nil, err
	}
	info, err := c.insp.GetTaskInfo(st.Queue, id)
	if err != nil {
		return nil, err
	}
	s := &Story{Status: st, Info: info, Origin: tasks.ParseOrigin(info.Headers)}
	if tp := info.Headers[tasks.HeaderTraceparent]; len(tp) >= 35 {
		s.TraceID = strings.Split(tp, "-")[1]
	}
	if s.Log, err = worker.ReadAttemptLog(ctx, c.rdb, st.Queue, id); err != nil {
		return nil, err
	}
	if s.Answers, err = delivery.WebhookAnswers(ctx, c.rdb, st.Queue, id); err != nil {
		return nil, err
	}
	s.API = st.API
	if info.Type == tasks.TypeSendConversationMessage {
		var p tasks.ConversationPayload
		if json.Unmarshal(info.Payload, &p) == nil {
			s.Body = fmt.Sprintf("[redacted: %d chars]", len([]rune(p.Body)))
			if p.MediaSID != "" {
				s.Media = []string{"[redacted: 1 Media SID]"}
			}
			s.Account = p.AccountSID
			author := p.Author
			if author == "" {
				author = "system (Twilio's default)"
			}
			s.Conversation = &ConversationFacts{ConversationSID: p.ConversationSID, ChatServiceSID: p.ServiceSID, Author: author}
		}
	} else {
		var p tasks.Payload
		if json.Unmarshal(info.Payload, &p) == nil {
			s.Body = fmt.Sprintf("[redacted: %d chars]", len([]rune(p.Body)))
			if n := len(p.MediaURLs); n > 0 {
				s.Media = []string{fmt.Sprintf("[redacted: %d URLs]", n)}
			}
			s.Account = p.AccountSID
		}
	}
	s.Events = c.timeline(s)
	return s, nil
}

// reveal fills in the body and media URLs.
func (s *Story) reveal() {
	if s.Info.Type == tasks.TypeSendConversationMessage {
		var p tasks.ConversationPayload
		if json.Unmarshal(s.Info.Payload, &p) == nil {
			s.Body, s.Media, s.Revealed = p.Body, nil, true
			if p.MediaSID != "" {
				s.Media = []string{p.MediaSID}
			}
		}
		return
	}
	var p tasks.Payload
	if json.Unmarshal(s.Info.Payload, &p) == nil {
		s.Body, s.Media, s.Revealed = p.Body, p.MediaURLs, true
	}
}

// timeline puts the story in order.
func (c *Console) timeline(s *Story) []Event {
	var ev []Event
	st, o := s.Status, s.Status.Outcome
	via := s.Origin.Via
	switch {
	case via == "":
		via = "unknown (enqueued before the console, or by another producer)"
	case via == "go":
		via = "Go (tasks.Enqueuer)"
	case via == "cli":
		via = "CLI (proxyq enqueue)"
	case via == "http":
		via = "HTTP API (proxyq serve)"
	case strings.HasPrefix(via, "http:"): // a named API token (PROXYQ_API_TOKENS "name:token")
		via = "HTTP API (proxyq serve), token " + strings.TrimPrefix(via, "http:")
	}
	detail := "to " + apiName(s.API) + ", queue " + st.Queue + ", through " + via
	if s.TraceID != "" {
		detail += ", trace " + s.TraceID
	}
	ev = append(ev, Event{At: s.Origin.EnqueuedAt, Kind: "enqueued", Title: "Enqueued", Detail: detail})
	for i, a := range s.Log.Attempts {
		e := Event{At: a.Start, Kind: "attempt", Title: fmt.Sprintf("Attempt %d: %s", i+1, resultName(a.Result)),
			Code: a.TwilioCode, Bad: a.Result != worker.ResultSent}
		parts := []string{fmt.Sprintf("took %d ms", a.Took.Milliseconds())}
		if a.HTTPStatus != 0 {
			parts = append(parts, fmt.Sprintf("HTTP %d", a.HTTPStatus))
		}
		if a.RequestID != "" {
			parts = append(parts, "Twilio-Request-Id "+a.RequestID)
		}
		e.Detail = strings.Join(parts, ", ")
		ev = append(ev, e)
	}
	for _, r := range s.Log.Reconciliation {
		e := Event{At: r.At, Kind: "reconciled", Title: "Reconciliation",
			Detail: fmt.Sprintf("looked for an interaction our earlier request may have created: %d matching", r.Found)}
		if r.Adopted != "" {
			e.Detail += ", adopted " + r.Adopted
			e.SIDs = []string{r.Adopted}
		} else {
			e.Detail += ", adopted none"
		}
		if r.Truncated {
			e.Detail += " (more pages than read)"
		}
		ev = append(ev, e)
	}
	if w := s.Log.Waits; len(w) > 0 {
		var parts []string
		for _, k := range []struct{ key, name string }{{worker.WaitLane, "lane"}, {worker.WaitService, "Service budget"}, {worker.WaitAccount, "account limits"}} {
			if w[k.key] > 0 {
				parts = append(parts, fmt.Sprintf("%d × %s", w[k.key], k.name))
			}
		}
		ev = append(ev, Event{Kind: "waits", Title: "Waits (not attempts)", Detail: strings.Join(parts, ", ")})
	}
	if o != nil {
		switch o.State {
		case tasks.OutcomeSent:
			at := o.RecordedAt
			d := "interaction " + o.InteractionSID
			sids := []string{o.InteractionSID}
			if o.MessageSID != "" { // Conversations: the Message (IM…) in its conversation
				d = "Conversations message " + o.MessageSID
				if o.ConversationSID != "" {
					d += " in conversation " + o.ConversationSID
				}
				if o.ChatServiceSID != "" {
					d += " of chat Service " + o.ChatServiceSID
				}
				sids = []string{o.MessageSID}
			}
			if o.OutboundResourceSID != "" {
				d += ", message " + o.OutboundResourceSID
				sids = append(sids, o.OutboundResourceSID)
			}
			if o.Reconciled {
				d += " (found by reconciliation)"
			}
			if o.SentAt != nil {
				d += ", Twilio created it " + o.SentAt.UTC().Format(time.RFC3339)
			}
			ev = append(ev, Event{At: at, Kind: "created", Title: "Created at Twilio", Detail: d, SIDs: sids})
		default:
			ev = append(ev, Event{At: o.RecordedAt, Kind: "state", Title: "Recorded: " + o.State, Detail: o.Error, Code: o.ErrorCode, Bad: true})
		}
		seen := map[string]bool{}
		var latest time.Time
		for _, h := range o.StatusHistory {
			title := "Status: "
			if s.API == tasks.APIConversations {
				title = "Delivery receipt: "
			}
			e := Event{At: h.At, Kind: "callback", Title: title + h.Status, Bad: h.Status == "undelivered" || h.Status == "failed"}
			switch {
			case seen[h.Status]:
				e.Mark = "duplicate"
			case h.At.Before(latest):
				e.Mark = "late"
			}
			seen[h.Status] = true
			if h.At.After(latest) {
				latest = h.At
			}
			ev = append(ev, e)
		}
		if o.DeliveryErrorCode != 0 {
			at := latest
			ev = append(ev, Event{At: at, Kind: "delivery-error", Title: fmt.Sprintf("Delivery error %d", o.DeliveryErrorCode),
				Detail: o.DeliveryError, Code: o.DeliveryErrorCode, Bad: true})
		}
		// Finished webhooks (accepted, or given up) from the answers kept with the message;
		// the others from their asynq tasks (queued, retrying).
		finished := map[string]bool{}
		for _, a := range s.Answers {
			finished[a.Status] = true
			ev = append(ev, answerEvent(a))
		}
		for _, h := range o.StatusHistory {
			if finished[h.Status] {
				continue
			}
			if info, err := c.insp.GetTaskInfo(st.Queue, delivery.WebhookTaskID(st.Queue, st.ID, h.Status)); err == nil {
				ev = append(ev, webhookEvent(h.Status, info))
			}
		}
	}
	if st.State == "archived" || st.State == "retry" {
		e := Event{Kind: "state", Title: "Now " + st.State, Detail: st.LastError, Bad: true}
		if st.LastFailedAt != nil {
			e.At = *st.LastFailedAt
		}
		ev = append(ev, e)
	}
	// In the order of the trip (Twilio's date_created has second precision, so a callback's
	// time may read earlier than our own enqueue), then by time within a phase.
	sort.SliceStable(ev, func(i, j int) bool {
		pi, pj := phase[ev[i].Kind], phase[ev[j].Kind]
		if pi != pj {
			return pi < pj
		}
		if ev[i].At.IsZero() || ev[j].At.IsZero() {
			return false
		}
		return ev[i].At.Before(ev[j].At)
	})
	return ev
}

// phase orders the kinds of events along a message's trip.
var phase = map[string]int{"enqueued": 0, "attempt": 1, "reconciled": 1, "waits": 2, "created": 3, "callback": 4,
	"delivery-error": 5, "webhook": 6, "state": 7}

// answerEvent is a finished status webhook and how the application answered it.
func answerEvent(a delivery.WebhookAnswer) Event {
	e := Event{At: a.At, Kind: "webhook"}
	switch {
	case a.Accepted():
		e.Title = "Status webhook (" + a.Status + "): accepted"
		e.Detail = fmt.Sprintf("your application answered %d", a.Code)
	case a.Code == 0:
		e.Title, e.Bad = "Status webhook ("+a.Status+"): given up", true
		e.Detail = "your application never answered (connection failed or timed out) on the last retry"
	default:
		e.Title, e.Bad = "Status webhook ("+a.Status+"): given up", true
		e.Detail = fmt.Sprintf("your application answered %d on the last retry", a.Code)
	}
	return e
}

func webhookEvent(status string, info *asynq.TaskInfo) Event {
	e := Event{Kind: "webhook", Title: "Status webhook (" + status + "): " + info.State.String()}
	switch info.State {
	case asynq.TaskStateCompleted:
		e.At = info.CompletedAt
		e.Detail = "your application answered 2xx" // kept only when webhook tasks have a retention
	default:
		e.At = info.LastFailedAt
		if info.LastErr != "" {
			e.Detail = "your application's last answer: " + info.LastErr
			e.Bad = true
		} else {
			e.Detail = "not sent yet"
		}
	}
	return e
}

// apiName is the Twilio API a message goes to, as the page names it.
func apiName(api string) string {
	if api == tasks.APIConversations {
		return "Twilio Conversations"
	}
	return "Twilio Proxy"
}

func resultName(r string) string {
	switch r {
	case worker.ResultSent:
		return "created"
	case worker.ResultRateLimited:
		return "rate limited by Twilio (429, not a failed attempt)"
	case worker.ResultRetried:
		return "failed, retried"
	case worker.ResultPermanent:
		return "refused for good"
	case worker.ResultUnknown:
		return "outcome unknown (may have created it)"
	}
	return r
}

// resolved is where a search leads.
type resolved struct {
	messageID    string // a message page
	participant  string // a list by participant
	session      string // a list by session
	conversation string // a list by conversation (CH…)
}

var errUnknown = errors.New("unknown")

// resolve finds what q names: a message ID or idempotency key, KI, SM, IM → one message; KP,
// KC, CH → a list. errUnknown when nothing is known by that value.
func (c *Console) resolve(ctx context.Context, q string) (resolved, error) {
	today := worker.DayOf(c.cfg.Now().UnixMilli())
	switch {
	case isSID(q, "KP"):
		return resolved{participant: q}, nil
	case isSID(q, "KC"):
		return resolved{session: q}, nil
	case isSID(q, "CH"):
		return resolved{conversation: q}, nil
	case isSID(q, "KI"), isSID(q, "IM"): // delivery indexes a Conversations Message SID as it does a KI
		_, id, ok, err := delivery.FindInteraction(ctx, c.rdb, q)
		if err != nil {
			return resolved{}, err
		}
		if ok {
			return resolved{messageID: id}, nil
		}
	case isSID(q, "SM"):
		ref, ok, err := worker.FindByMessageSID(ctx, c.rdb, q, today, sidDays)
		if err != nil {
			return resolved{}, err
		}
		if ok {
			return resolved{messageID: ref.TaskID}, nil
		}
	}
	if _, err := tasks.Lookup(ctx, c.insp, q); err == nil {
		return resolved{messageID: q}, nil
	} else if !errors.Is(err, tasks.ErrNotFound) {
		return resolved{}, err
	}
	return resolved{}, errUnknown
}

// sidDays is how many days of the Message SID index a search reads: the index keeps a day's
// entries LedgerTTL (72h by default) after it ends.
const sidDays = 5

func isSID(s, prefix string) bool {
	if len(s) != 34 || !strings.HasPrefix(s, prefix) {
		return false
	}
	for _, r := range s[2:] {
		if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
			return false
		}
	}
	return true
}
