package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"go.uber.org/zap"

	"github.com/proxyq/proxyq/tasks"
)

// States a list can show, in asynq's words.
var states = []string{"pending", "scheduled", "active", "retry", "archived", "completed"}

// Filter is a list's query, all of it in the URL so that a view can be bookmarked.
type Filter struct {
	State, Queue, Delivery, Code, Account, Service string
	Participant, Session                           string // a search's list
	From, To                                       time.Time
	Page                                           int
}

func parseFilter(q url.Values) (Filter, error) {
	f := Filter{State: q.Get("state"), Queue: q.Get("queue"), Delivery: q.Get("delivery"), Code: strings.TrimSpace(q.Get("code")),
		Account: strings.TrimSpace(q.Get("account")), Service: strings.TrimSpace(q.Get("service")),
		Participant: q.Get("participant"), Session: q.Get("session")}
	if f.State == "" {
		f.State = "archived"
	}
	if !contains(states, f.State) {
		return f, fmt.Errorf("state %q is not one of %s", f.State, strings.Join(states, ", "))
	}
	if f.Queue == "" {
		f.Queue = tasks.DefaultQueue
	}
	if f.Code != "" {
		if _, err := strconv.Atoi(f.Code); err != nil {
			return f, fmt.Errorf("error code %q is not a number", f.Code)
		}
	}
	for _, t := range []struct {
		name string
		dst  *time.Time
	}{{"from", &f.From}, {"to", &f.To}} {
		if v := q.Get(t.name); v != "" {
			parsed, err := time.Parse("2006-01-02T15:04", v)
			if err != nil {
				return f, fmt.Errorf("%s %q: want a time such as 2026-12-07T15:04 (UTC)", t.name, v)
			}
			*t.dst = parsed
		}
	}
	f.Page, _ = strconv.Atoi(q.Get("page"))
	if f.Page < 1 {
		f.Page = 1
	}
	return f, nil
}

// Values is the filter as a query string, for links (page, the bulk retry's form).
func (f Filter) Values() url.Values {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	set("state", f.State)
	set("queue", f.Queue)
	set("delivery", f.Delivery)
	set("code", f.Code)
	set("account", f.Account)
	set("service", f.Service)
	set("participant", f.Participant)
	set("session", f.Session)
	if !f.From.IsZero() {
		v.Set("from", f.From.Format("2006-01-02T15:04"))
	}
	if !f.To.IsZero() {
		v.Set("to", f.To.Format("2006-01-02T15:04"))
	}
	return v
}

// narrowed reports whether the filter has conditions beyond state and queue (applied to each
// page's messages, not by asynq).
func (f Filter) narrowed() bool {
	return f.Delivery != "" || f.Code != "" || f.Account != "" || f.Service != "" || !f.From.IsZero() || !f.To.IsZero()
}

// Row is one message in a list.
type Row struct {
	ID, Queue, State, Participant, Session, Service, Account string
	API, Conversation                                        string // "proxy" or "conversations"; CH… for the latter
	Delivery                                                 string
	Code                                                     int
	When                                                     time.Time
	LastError                                                string
}

func rowOf(st *tasks.Status, info *asynq.TaskInfo) Row {
	r := Row{ID: st.ID, Queue: st.Queue, State: st.State, Participant: st.Message.ParticipantSID, Session: st.Message.SessionSID,
		Service: st.Message.ServiceSID, LastError: st.LastError, API: st.API, Conversation: st.Message.ConversationSID}
	if r.API == tasks.APIConversations {
		r.Service = st.Message.ChatServiceSID
	}
	var p struct {
		AccountSID string `json:"account_sid"`
	}
	if info != nil && json.Unmarshal(info.Payload, &p) == nil {
		r.Account = p.AccountSID
	}
	if info != nil {
		r.When = tasks.ParseOrigin(info.Headers).EnqueuedAt
	}
	if o := st.Outcome; o != nil {
		r.Delivery = o.OutboundStatus
		r.Code = o.DeliveryErrorCode
		if r.Code == 0 {
			r.Code = o.ErrorCode
		}
		if r.When.IsZero() {
			r.When = o.RecordedAt
		}
	}
	if r.When.IsZero() && st.CompletedAt != nil {
		r.When = *st.CompletedAt
	}
	return r
}

func (f Filter) match(r Row) bool {
	switch {
	case f.Delivery != "" && r.Delivery != f.Delivery:
		return false
	case f.Code != "" && strconv.Itoa(r.Code) != f.Code:
		return false
	case f.Account != "" && r.Account != f.Account:
		return false
	case f.Service != "" && r.Service != f.Service:
		return false
	case !f.From.IsZero() && r.When.Before(f.From):
		return false
	case !f.To.IsZero() && r.When.After(f.To):
		return false
	}
	return true
}

// listPage returns one asynq page of the filter's state and queue, narrowed by its other
// conditions: O(page).
func (c *Console) listPage(f Filter, page, size int) (rows []Row, full bool, err error) {
	opts := []asynq.ListOption{asynq.Page(page), asynq.PageSize(size)}
	var infos []*asynq.TaskInfo
	switch f.State {
	case "pending":
		infos, err = c.insp.ListPendingTasks(f.Queue, opts...)
	case "scheduled":
		infos, err = c.insp.ListScheduledTasks(f.Queue, opts...)
	case "active":
		infos, err = c.insp.ListActiveTasks(f.Queue, opts...)
	case "retry":
		infos, err = c.insp.ListRetryTasks(f.Queue, opts...)
	case "archived":
		infos, err = c.insp.ListArchivedTasks(f.Queue, opts...)
	case "completed":
		infos, err = c.insp.ListCompletedTasks(f.Queue, opts...)
	}
	if errors.Is(err, asynq.ErrQueueNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	for _, info := range infos {
		if info.Type != tasks.TypeSendInteraction && info.Type != tasks.TypeSendConversationMessage {
			continue
		}
		r := rowOf(statusOf(info), info)
		if f.match(r) {
			rows = append(rows, r)
		}
	}
	return rows, len(infos) == size, nil
}

// statusOf is tasks' view of a listed task (Lookup would look it up again).
func statusOf(info *asynq.TaskInfo) *tasks.Status {
	st := &tasks.Status{ID: info.ID, Queue: info.Queue, State: info.State.String(), LastError: info.LastErr, API: "proxy"}
	if info.Type == tasks.TypeSendConversationMessage {
		st.API = tasks.APIConversations
		var p tasks.ConversationPayload
		if json.Unmarshal(info.Payload, &p) == nil {
			st.Message.ConversationSID, st.Message.ChatServiceSID = p.ConversationSID, p.ServiceSID
		}
	} else {
		var p tasks.Payload
		if json.Unmarshal(info.Payload, &p) == nil {
			st.Message.ServiceSID, st.Message.SessionSID, st.Message.ParticipantSID = p.ServiceSID, p.SessionSID, p.ParticipantSID
		}
	}
	if o, err := tasks.ParseOutcome(info.Result); err == nil {
		st.Outcome = o
	}
	if !info.CompletedAt.IsZero() {
		t := info.CompletedAt
		st.CompletedAt = &t
	}
	return st
}

// TopError is one line of the top-errors panel.
type TopError struct {
	Code          int
	Hour, Day     int64
	Meaning, Link string
}

func (c *Console) topErrors(ctx context.Context) ([]TopError, error) {
	now := c.cfg.Now()
	hour, err := tasks.ErrorCounts(ctx, c.rdb, now, 1)
	if err != nil {
		return nil, err
	}
	day, err := tasks.ErrorCounts(ctx, c.rdb, now, 24)
	if err != nil {
		return nil, err
	}
	var out []TopError
	for code, n := range day {
		out = append(out, TopError{Code: code, Hour: hour[code], Day: n, Meaning: codeMeaning(code)})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Day != out[j].Day {
			return out[i].Day > out[j].Day
		}
		return out[i].Code < out[j].Code
	})
	return out[:min(len(out), 10)], nil
}

type homeData struct {
	Filter    Filter
	States    []string
	Queues    []string
	Rows      []Row
	More      bool
	Narrowed  bool
	TopErrors []TopError
	Next      string
	Prev      string
	Heading   string
	Total     int
	Notice    string
}

func (c *Console) home(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilter(r.URL.Query())
	if err != nil {
		c.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	d := homeData{Filter: f, States: states, Narrowed: f.narrowed(), Notice: r.URL.Query().Get("notice")}
	if d.Queues, err = c.insp.Queues(); err != nil {
		c.fail(w, r, http.StatusServiceUnavailable, "Redis: "+err.Error())
		return
	}
	if !contains(d.Queues, f.Queue) {
		d.Queues = append(d.Queues, f.Queue)
	}
	if d.TopErrors, err = c.topErrors(r.Context()); err != nil {
		c.fail(w, r, http.StatusServiceUnavailable, "Redis: "+err.Error())
		return
	}
	d.Rows, d.More, err = c.listPage(f, f.Page, c.cfg.PageSize)
	if err != nil {
		c.fail(w, r, http.StatusServiceUnavailable, "Redis: "+err.Error())
		return
	}
	d.Heading = fmt.Sprintf("%s messages in queue %s", f.State, f.Queue)
	d.Next, d.Prev = c.pageLinks(f, d.More)
	p := c.newPage(r, "proxyq console", d)
	p.Live = true
	c.render(w, r, "home", http.StatusOK, p)
}

func (c *Console) pageLinks(f Filter, more bool) (next, prev string) {
	if more {
		n := f
		n.Page++
		next = "?" + n.Values().Encode() + "&page=" + strconv.Itoa(n.Page)
	}
	if f.Page > 1 {
		p := f
		p.Page--
		prev = "?" + p.Values().Encode() + "&page=" + strconv.Itoa(p.Page)
	}
	return next, prev
}

func (c *Console) search(w http.ResponseWriter, r *http.Request) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	if q == "" {
		http.Redirect(w, r, c.cfg.RootPath+"/", http.StatusSeeOther)
		return
	}
	f, err := parseFilter(r.URL.Query())
	if err != nil {
		c.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	res, err := c.resolve(r.Context(), q)
	switch {
	case errors.Is(err, errUnknown):
		p := c.newPage(r, "Not found", fmt.Sprintf("Nothing is known by %q: no message ID or idempotency key, interaction (KI), Message (SM), Conversations Message (IM), participant (KP), session (KC) or conversation (CH) SID that proxyq still keeps. Messages are kept for their retention (72 h by default) after they finish.", q))
		p.Query = q
		c.render(w, r, "error", http.StatusNotFound, p)
		return
	case err != nil:
		c.fail(w, r, http.StatusServiceUnavailable, "Redis: "+err.Error())
		return
	case res.messageID != "":
		http.Redirect(w, r, c.cfg.RootPath+"/m/"+pathEscape(res.messageID), http.StatusSeeOther)
		return
	}
	var found []tasks.Indexed
	var total int
	offset := (f.Page - 1) * c.cfg.PageSize
	heading := ""
	switch {
	case res.participant != "":
		found, total, err = tasks.ByParticipant(r.Context(), c.rdb, res.participant, c.cfg.Now(), offset, c.cfg.PageSize)
		heading = "Messages to participant " + res.participant + ", newest first"
	case res.conversation != "":
		found, total, err = tasks.ByConversation(r.Context(), c.rdb, res.conversation, c.cfg.Now(), offset, c.cfg.PageSize)
		heading = "Messages in conversation " + res.conversation + ", newest first"
	default:
		found, total, err = tasks.BySession(r.Context(), c.rdb, res.session, c.cfg.Now(), offset, c.cfg.PageSize)
		heading = "Messages in session " + res.session + ", newest first"
	}
	if err != nil {
		c.fail(w, r, http.StatusServiceUnavailable, "Redis: "+err.Error())
		return
	}
	d := homeData{Filter: f, Heading: heading, Total: total}
	for _, m := range found {
		info, err := c.insp.GetTaskInfo(m.Queue, m.TaskID)
		if err != nil {
			st, lerr := tasks.Lookup(r.Context(), c.insp, m.TaskID) // another queue (a keyed duplicate)
			if lerr != nil {
				continue // deleted
			}
			if info, err = c.insp.GetTaskInfo(st.Queue, m.TaskID); err != nil {
				continue
			}
		}
		d.Rows = append(d.Rows, rowOf(statusOf(info), info))
	}
	if total == 0 {
		p := c.newPage(r, "Not found", fmt.Sprintf("No messages are known for %s (messages are found by participant, session and conversation for their retention after they finish).", q))
		p.Query = q
		c.render(w, r, "error", http.StatusNotFound, p)
		return
	}
	f.Page = max(f.Page, 1)
	more := offset+len(found) < total
	n := url.Values{"q": {q}}
	if more {
		d.Next = "?" + n.Encode() + "&page=" + strconv.Itoa(f.Page+1)
	}
	if f.Page > 1 {
		d.Prev = "?" + n.Encode() + "&page=" + strconv.Itoa(f.Page-1)
	}
	p := c.newPage(r, heading, d)
	p.Query = q
	p.Live = true
	c.render(w, r, "list", http.StatusOK, p)
}

func (c *Console) message(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s, err := c.loadStory(r.Context(), id)
	if errors.Is(err, tasks.ErrNotFound) {
		c.fail(w, r, http.StatusNotFound, fmt.Sprintf("No message %q: it never existed, was deleted, or its retention is over.", id))
		return
	}
	if err != nil {
		c.fail(w, r, http.StatusServiceUnavailable, "Redis: "+err.Error())
		return
	}
	p := c.newPage(r, "Message "+id, s)
	p.Query = id
	p.Live = true
	c.render(w, r, "message", http.StatusOK, p)
}

// AuditEntry is one action in the audit log.
type AuditEntry struct {
	At     time.Time `json:"at"`
	Who    string    `json:"who"`
	Action string    `json:"action"`
	Target string    `json:"target"`
	Count  int       `json:"count"`
	Result string    `json:"result"`
}

// auditKey is a capped list of the latest actions (auditKeep), newest first.
const (
	auditKey  = "proxyq:console:audit"
	auditKeep = 1000
)

func (c *Console) writeAudit(ctx context.Context, e AuditEntry) {
	e.At = c.cfg.Now().UTC()
	b, _ := json.Marshal(e)
	pipe := c.rdb.TxPipeline()
	pipe.LPush(ctx, auditKey, b)
	pipe.LTrim(ctx, auditKey, 0, auditKeep-1)
	if _, err := pipe.Exec(ctx); err != nil {
		c.log.Error("console: audit log write failed", zap.String("action", e.Action), zap.String("who", e.Who), zap.Error(err))
	}
	c.log.Info("console action", zap.String("who", e.Who), zap.String("action", e.Action), zap.String("target", e.Target),
		zap.Int("count", e.Count), zap.String("result", e.Result))
}

func (c *Console) audit(w http.ResponseWriter, r *http.Request) {
	raw, err := c.rdb.LRange(r.Context(), auditKey, 0, 199).Result()
	if err != nil {
		c.fail(w, r, http.StatusServiceUnavailable, "Redis: "+err.Error())
		return
	}
	var entries []AuditEntry
	for _, s := range raw {
		var e AuditEntry
		if json.Unmarshal([]byte(s), &e) == nil {
			entries = append(entries, e)
		}
	}
	p := c.newPage(r, "Audit log", entries)
	p.Live = true
	c.render(w, r, "audit", http.StatusOK, p)
}

// action runs one message's action: retry (archived), cancel (pending, scheduled, retry) or
// reveal (its content, for a caller allowed to see it).
func (c *Console) action(w http.ResponseWriter, r *http.Request) {
	id := c.identity(r)
	act := r.PathValue("action")
	if !c.checkCSRF(r, id) {
		c.fail(w, r, http.StatusForbidden, "This form is stale or came from another site (CSRF token missing or wrong): reload the page and try again.")
		return
	}
	msgID := r.PostFormValue("id")
	switch act {
	case "reveal":
		if !c.canReveal(id) {
			c.fail(w, r, http.StatusForbidden, "Revealing message content needs the operator role or --show-message-content.")
			return
		}
		s, err := c.loadStory(r.Context(), msgID)
		if err != nil {
			c.fail(w, r, http.StatusNotFound, fmt.Sprintf("No message %q.", msgID))
			return
		}
		s.reveal()
		c.writeAudit(r.Context(), AuditEntry{Who: id.Name, Action: "reveal", Target: msgID, Count: 1, Result: "shown"})
		p := c.newPage(r, "Message "+msgID, s)
		c.render(w, r, "message", http.StatusOK, p)
		return
	case "retry", "cancel":
	default:
		c.fail(w, r, http.StatusNotFound, fmt.Sprintf("No action %q.", act))
		return
	}
	if !c.canAct(id) {
		c.writeAudit(r.Context(), AuditEntry{Who: id.Name, Action: act, Target: msgID, Result: "refused: read-only"})
		c.fail(w, r, http.StatusForbidden, "This console is read-only: actions are refused.")
		return
	}
	var result string
	var err error
	switch act {
	case "retry":
		var st *tasks.Status
		st, err = tasks.Lookup(r.Context(), c.insp, msgID)
		switch {
		case err != nil:
		case st.State != "archived":
			err = fmt.Errorf("only an archived message can be retried; this one is %s", st.State)
		default:
			err = c.insp.RunTask(st.Queue, msgID)
		}
		result = "retried: pending again"
	case "cancel":
		if err = c.guard(r.Context(), msgID); err == nil {
			_, err = tasks.Cancel(r.Context(), c.insp, msgID)
		}
		result = "cancelled: deleted before it was sent"
	}
	if err != nil {
		result = "refused: " + err.Error()
	}
	c.writeAudit(r.Context(), AuditEntry{Who: id.Name, Action: act, Target: msgID, Count: btoi(err == nil), Result: result})
	if err != nil {
		c.fail(w, r, http.StatusConflict, fmt.Sprintf("Could not %s %s: %v", act, msgID, err))
		return
	}
	if act == "cancel" {
		http.Redirect(w, r, c.cfg.RootPath+"/?notice="+url.QueryEscape(msgID+" "+result), http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, c.cfg.RootPath+"/m/"+pathEscape(msgID), http.StatusSeeOther)
}

// bulkMax bounds one bulk retry, and bulkPage the pages it reads.
const (
	bulkMax  = 10000
	bulkPage = 500
)

// bulkRetry retries every archived message the filter shows: without confirm=yes it only
// counts them and asks; with it (and the count it showed) it runs them.
func (c *Console) bulkRetry(w http.ResponseWriter, r *http.Request) {
	id := c.identity(r)
	if !c.checkCSRF(r, id) {
		c.fail(w, r, http.StatusForbidden, "This form is stale or came from another site (CSRF token missing or wrong): reload the page and try again.")
		return
	}
	if err := r.ParseForm(); err != nil {
		c.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	f, err := parseFilter(r.PostForm)
	if err != nil {
		c.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	target := "archived in " + f.Queue + " matching " + f.Values().Encode()
	if !c.canAct(id) {
		c.writeAudit(r.Context(), AuditEntry{Who: id.Name, Action: "bulk-retry", Target: target, Result: "refused: read-only"})
		c.fail(w, r, http.StatusForbidden, "This console is read-only: actions are refused.")
		return
	}
	if f.State != "archived" {
		c.fail(w, r, http.StatusBadRequest, "Bulk retry applies to archived messages: choose the archived state first.")
		return
	}
	var ids []string
	f2 := f
	f2.Page = 1
	for page := 1; len(ids) < bulkMax; page++ {
		rows, full, err := c.listPage(f2, page, bulkPage)
		if err != nil {
			c.fail(w, r, http.StatusServiceUnavailable, "Redis: "+err.Error())
			return
		}
		for _, row := range rows {
			ids = append(ids, row.ID)
		}
		if !full {
			break
		}
	}
	ids = ids[:min(len(ids), bulkMax)]
	if r.PostFormValue("confirm") != "yes" {
		p := c.newPage(r, "Retry "+strconv.Itoa(len(ids))+" messages?", struct {
			Count  int
			Filter Filter
			Fields url.Values
		}{len(ids), f, f.Values()})
		c.render(w, r, "confirm", http.StatusOK, p)
		return
	}
	done := 0
	var failed []string
	for _, mid := range ids {
		if err := c.insp.RunTask(f.Queue, mid); err != nil {
			failed = append(failed, mid)
			continue
		}
		done++
	}
	result := fmt.Sprintf("retried %d of %d", done, len(ids))
	if len(failed) > 0 {
		result += fmt.Sprintf(" (%d no longer archived)", len(failed))
	}
	c.writeAudit(r.Context(), AuditEntry{Who: id.Name, Action: "bulk-retry", Target: target, Count: done, Result: result})
	http.Redirect(w, r, c.cfg.RootPath+"/?notice="+url.QueryEscape(result)+"&state=archived&queue="+url.QueryEscape(f.Queue), http.StatusSeeOther)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
