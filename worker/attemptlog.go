package worker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/proxyq/proxyq/proxyclient"
	"github.com/proxyq/proxyq/tasks"
)

// The attempt log: what each run of a message did, for the console's timeline.
//
// Where it lives. In asynq's task hash, so it lives and dies with the task like the ledger
// does: field `pl` once a run released the message without sending (a retry, a wait), and, for
// a message sent by its first run (the common case), key "l" of the outcome record instead (no
// field of its own: ~40 bytes less per message). It is written by the ledger's own scripts
// (Release, MarkSent) in the HSET they already make, and read with the HMGET that replaced
// their HGET: the log costs no Redis command of its own on the send path.
//
// Its value is `<waits>|<rows>`. waits counts the runs that waited instead of sending (a
// letter per reason and its count: l lane, s Service budget, a account limits), so a message that
// waited a thousand times still costs a few bytes. rows are the last maxLogRows events, separated
// by ';', each a comma-separated list:
//
//	a,<start ms base 36>,<duration ms>,<result>,<http status>,<twilio code>,<Twilio-Request-Id>
//	a,<start ms base 36>,<duration ms>,s            (a sent attempt: 201, no code)
//	r,<at ms base 36>,<candidates found>,<adopted interaction SID or empty>,<truncated 0|1>
//
// Results: s sent, t rate limited (429: not a failed attempt), r retried, p permanent failure,
// u unknown (the request may have created the interaction). A first attempt that succeeds
// writes ~20 bytes.
const logField = "pl"

// maxLogRows bounds the rows kept; the counters keep counting.
const maxLogRows = 12

// Wait reasons counted in the attempt log.
const (
	WaitLane    = "l"
	WaitService = "s"
	WaitAccount = "a"
)

// Attempt results in the log.
const (
	ResultSent        = "s"
	ResultRateLimited = "t"
	ResultRetried     = "r"
	ResultPermanent   = "p"
	ResultUnknown     = "u"
)

// LogEntry is one event a run adds to the attempt log: an attempt, a reconciliation, or a wait.
// The zero value adds nothing.
type LogEntry struct {
	row  string // encoded row, "" for none
	wait string // wait reason to count, "" for none
}

// AttemptEntry records one POST: when it started, how long it took, and what came of it.
func AttemptEntry(start time.Time, took time.Duration, result string, err error) LogEntry {
	var b strings.Builder
	b.Grow(64)
	b.WriteString("a,")
	b.WriteString(strconv.FormatInt(start.UnixMilli(), 36))
	b.WriteByte(',')
	b.WriteString(strconv.FormatInt(took.Milliseconds(), 10))
	b.WriteByte(',')
	b.WriteString(result)
	var apiErr *proxyclient.Error
	switch {
	case errors.As(err, &apiErr):
		fmt.Fprintf(&b, ",%d,%d,%s", apiErr.StatusCode, apiErr.Code, logSafe(apiErr.RequestID))
	case err == nil && result == ResultSent:
		// 201 Created, no code, no request ID: implied by the result, so the row ends here
		// (3 bytes less in every sent message's record).
	default:
		b.WriteString(",,,")
	}
	return LogEntry{row: b.String()}
}

// ReconcileEntry records a reconciliation: how many matching interactions it found and which it
// adopted ("" for none).
func ReconcileEntry(at time.Time, found int, adopted string, truncated bool) LogEntry {
	t := "0"
	if truncated {
		t = "1"
	}
	return LogEntry{row: "r," + strconv.FormatInt(at.UnixMilli(), 36) + "," + strconv.Itoa(found) + "," + logSafe(adopted) + "," + t}
}

// WaitEntry counts one wait for reason (WaitLane, WaitService, WaitAccount).
func WaitEntry(reason string) LogEntry { return LogEntry{wait: reason} }

// logValue is a log holding only waits (letters, counted here) and rows: the form of
// Outcome.AttemptLog.
func logValue(waits, rows string) string {
	counts := map[byte]int{}
	var order []byte
	for i := 0; i < len(waits); i++ {
		if counts[waits[i]] == 0 {
			order = append(order, waits[i])
		}
		counts[waits[i]]++
	}
	var b strings.Builder
	for _, c := range order {
		b.WriteByte(c)
		b.WriteString(strconv.Itoa(counts[c]))
	}
	return b.String() + "|" + rows
}

// logSafe keeps the separators of the log out of a value that came from outside.
func logSafe(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case ',', ';', '|':
			return '_'
		}
		return r
	}, s)
}

// logArgs folds entries into the two script arguments: the rows to append (';'-joined) and the
// wait reasons to count (concatenated letters).
func logArgs(entries []LogEntry) (rows, waits string) {
	var r []string
	for _, e := range entries {
		if e.row != "" {
			r = append(r, e.row)
		}
		waits += e.wait
	}
	return strings.Join(r, ";"), waits
}

// luaAddLog defines addlog(old, rows, waits): old log value (or false) with rows appended (the
// last maxLogRows kept) and each wait letter counted. Lua string work, no Redis command.
var luaAddLog = `
local function addlog(old, rows, waits)
  local w, r = '', ''
  if old then
    w, r = string.match(old, '^([^|]*)|(.*)$')
    if not w then w, r = '', '' end
  end
  for c in string.gmatch(waits, '%a') do
    local n = tonumber(string.match(w, c .. '(%d+)'))
    if n then w = string.gsub(w, c .. '%d+', c .. (n + 1), 1) else w = w .. c .. '1' end
  end
  if rows ~= '' then
    if r ~= '' then r = r .. ';' .. rows else r = rows end
    local _, n = string.gsub(r, ';', '')
    while n >= ` + strconv.Itoa(maxLogRows) + ` do r = string.sub(r, string.find(r, ';', 1, true) + 1); n = n - 1 end
  end
  return w .. '|' .. r
end
`

// AttemptLog is a message's attempt log as read back.
type AttemptLog struct {
	Waits          map[string]int // by reason (WaitLane, WaitService, WaitAccount)
	Attempts       []LoggedAttempt
	Reconciliation []LoggedReconciliation
}

// LoggedAttempt is one POST from the log.
type LoggedAttempt struct {
	Start      time.Time
	Took       time.Duration
	Result     string // Result* constants
	HTTPStatus int
	TwilioCode int
	RequestID  string
}

// LoggedReconciliation is one reconciliation from the log.
type LoggedReconciliation struct {
	At        time.Time
	Found     int
	Adopted   string
	Truncated bool
}

// ParseAttemptLog decodes the log field's value; an empty value is an empty log. Rows it does not
// understand (written by a newer version) are skipped.
func ParseAttemptLog(raw string) AttemptLog {
	l := AttemptLog{Waits: map[string]int{}}
	if raw == "" {
		return l
	}
	waits, rows, _ := strings.Cut(raw, "|")
	for i := 0; i < len(waits); {
		c := waits[i]
		j := i + 1
		for j < len(waits) && waits[j] >= '0' && waits[j] <= '9' {
			j++
		}
		n, _ := strconv.Atoi(waits[i+1 : j])
		l.Waits[string(c)] += n
		i = j
	}
	for _, row := range strings.Split(rows, ";") {
		f := strings.Split(row, ",")
		if len(f) == 4 && f[0] == "a" && f[3] == ResultSent {
			f = append(f, "", "", "") // a sent attempt's short row
		}
		switch {
		case f[0] == "a" && len(f) >= 7:
			ms, _ := strconv.ParseInt(f[1], 36, 64)
			took, _ := strconv.ParseInt(f[2], 10, 64)
			hs, _ := strconv.Atoi(f[4])
			code, _ := strconv.Atoi(f[5])
			if hs == 0 && f[3] == ResultSent {
				hs = 201
			}
			l.Attempts = append(l.Attempts, LoggedAttempt{Start: time.UnixMilli(ms).UTC(), Took: time.Duration(took) * time.Millisecond,
				Result: f[3], HTTPStatus: hs, TwilioCode: code, RequestID: f[6]})
		case f[0] == "r" && len(f) >= 5:
			ms, _ := strconv.ParseInt(f[1], 36, 64)
			found, _ := strconv.Atoi(f[2])
			l.Reconciliation = append(l.Reconciliation, LoggedReconciliation{At: time.UnixMilli(ms).UTC(), Found: found,
				Adopted: f[3], Truncated: f[4] == "1"})
		}
	}
	return l
}

// ReadAttemptLog returns the attempt log of one message (empty when it has none, or is gone):
// field pl when the message has one, else the part its outcome record carries (a message sent
// by its first run). One HMGET.
func ReadAttemptLog(ctx context.Context, rdb redis.UniversalClient, queue, taskID string) (AttemptLog, error) {
	v, err := rdb.HMGet(ctx, LedgerKey(queue, taskID), logField, "result").Result()
	if err != nil {
		return AttemptLog{}, fmt.Errorf("attempt log: %w", err)
	}
	if raw, ok := v[0].(string); ok {
		return ParseAttemptLog(raw), nil
	}
	if res, ok := v[1].(string); ok {
		if o, err := tasks.ParseOutcome([]byte(res)); err == nil && o != nil {
			return ParseAttemptLog(o.AttemptLog), nil
		}
	}
	return ParseAttemptLog(""), nil
}
