// Package interaction is the one Redis key proxyq keeps per interaction it created (a Proxy
// interaction KI…, or a Conversations message IM…): which message created it. Two parts of
// proxyq read it, so it is written once:
//
//   - the send ledger's claim (package worker): the script that records a Proxy send writes
//     it in the same step, and refuses the record when another message holds it, so that
//     reconciliation never adopts another message's interaction;
//   - the delivery index (package delivery): a status callback names the interaction, and the
//     key says whose outcome record it changes and which account may change it.
//
// One key instead of a claim in a per-participant hash beside an index key saves a message
// about 120 bytes of Redis and two commands (docs/performance.md).
//
// Its values:
//
//	(none)         nothing known
//	"~"            status callbacks came before the send was recorded; they wait in EarlyList
//	"~" + ref      claimed by ref, whose record may not be written yet (on a Redis Cluster the
//	               claim is taken before the record, in its own slot); callbacks wait too
//	ref            ref's send is recorded: callbacks apply to its record
//	ref + ,"e":1   recorded, and callbacks that came early are still to be applied
//
// where ref is the JSON object {"q":<queue>,"id":<task ID>,"a":<account SID>} (Ref.Value).
package interaction

import (
	"fmt"
	"strings"

	"github.com/segmentio/encoding/json"
)

// Key is the key of interaction sid.
func Key(sid string) string { return "proxyq:{ki:" + sid + "}:msg" }

// EarlyList is the list of callbacks for sid that came before its send was recorded; the same
// Redis Cluster slot as Key.
func EarlyList(sid string) string { return "proxyq:{ki:" + sid + "}:early" }

// Waiting is the prefix of a value under which callbacks wait: the whole value "~" when only
// callbacks are known, "~" + ref while a claim's record may still be missing.
const Waiting = "~"

// Ref names the message an interaction belongs to.
type Ref struct {
	Queue      string `json:"q"`
	TaskID     string `json:"id"`
	AccountSID string `json:"a,omitempty"`
	// MessageSID is an SM… to fetch: read from entries written before 2026-12 ("m"), filled
	// by delivery from the record where a fetch needs it; never written to the key (Value).
	MessageSID string `json:"m,omitempty"`
}

// Value is ref as the key stores it. The claim compares it byte for byte with what the key
// holds, so it must be what encoding/json wrote in earlier versions: segmentio's encoder
// (every send writes one) writes the same bytes (FuzzValueAsEncodingJSON).
func (r Ref) Value() string {
	b, _ := json.Marshal(Ref{Queue: r.Queue, TaskID: r.TaskID, AccountSID: r.AccountSID})
	return string(b)
}

// Parse reads a value of the key. ref is nil when no message's send is recorded under it yet
// ("~" alone); pending is true while callbacks wait (a "~" prefix); claim is the message that
// holds the interaction, recorded or not (nil for "~" alone).
func Parse(v string) (claim *Ref, pending bool, err error) {
	body, pending := strings.CutPrefix(v, Waiting)
	if body == "" {
		return nil, pending, nil
	}
	var r Ref
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		return nil, pending, fmt.Errorf("interaction key: unreadable value %q: %w", v, err)
	}
	return &r, pending, nil
}

// LuaClaim is the claim, for the ledger's scripts: it claims KEYS[#KEYS] (Key) for the message
// whose value (Ref.Value) is ARGV[ci], task ID ARGV[ci+1], for ARGV[ci+2] ms (never shortening
// a longer life); ARGV[ci+3] '1' takes it before the record is written (the "~" prefix). It
// returns 'claimed' from the script when another message holds the key, and otherwise sets
// `claim`: 'new' when it wrote the value where there was none; 'same' when the key already
// said exactly this; 'early' when it found something else of this message's or callbacks
// waiting, and rewrote the value to say that they wait (,"e":1, or the "~" prefix). Only 'new'
// without the prefix means that no callback waits for this message. Set `ci` before it. One
// command in the common case: SET NX GET (Redis 7.0+; a GET and a SET on older servers).
const LuaClaim = `
local ik = KEYS[#KEYS]
local ival, itask, ittl, ipend = ARGV[ci], ARGV[ci + 1], tonumber(ARGV[ci + 2]), ARGV[ci + 3] == '1'
local iwant = ival
if ipend then iwant = '` + Waiting + `' .. ival end
local iok, iold = pcall(redis.call, 'SET', ik, iwant, 'NX', 'GET', 'PX', ittl)
if not iok then
  iold = redis.call('GET', ik)
  if not iold then redis.call('SET', ik, iwant, 'PX', ittl) end
end
local claim = 'new'
if iold then
  local body = iold
  if string.sub(body, 1, 1) == '` + Waiting + `' then body = string.sub(body, 2) end
  local ie = string.sub(ival, 1, -2) .. ',"e":1}'
  if body ~= '' and body ~= ival and body ~= ie then
    local dok, d = pcall(cjson.decode, body)
    if not dok or type(d) ~= 'table' or d.id ~= itask then return 'claimed' end
  end
  if iold == iwant then
    claim = 'same'
  else
    claim = 'early'
    local v = ie
    if ipend then v = iwant end
    redis.call('SET', ik, v, 'PX', math.max(ittl, redis.call('PTTL', ik)))
  end
end
`
