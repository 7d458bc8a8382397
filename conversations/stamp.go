package conversations

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// StampKey is the key of proxyq's stamp in a message's Attributes:
// {"proxyq":{"id":"<task id>"}, …the producer's keys…}.
const StampKey = "proxyq"

// ErrNotJSONObject is wrapped by StampAttributes when the producer's attributes are not a JSON
// object.
var ErrNotJSONObject = errors.New("attributes must be a JSON object")

// StampAttributes returns the Attributes to create a message with: the producer's attributes
// (a JSON object; "" means none) with proxyq's stamp under StampKey. The stamp always wins: a
// producer value under StampKey is replaced, so no producer can make a message look like
// another one. The producer's other values are kept byte for byte; the key order of the result
// is sorted. It returns an error wrapping ErrNotJSONObject, or one naming an empty id.
func StampAttributes(producer, id string) (string, error) {
	if id == "" {
		return "", errors.New("conversations: stamp id must not be empty")
	}
	m := map[string]json.RawMessage{}
	if strings.TrimSpace(producer) != "" {
		if err := json.Unmarshal([]byte(producer), &m); err != nil || m == nil {
			return "", ErrNotJSONObject
		}
	}
	stamp, err := json.Marshal(struct {
		ID string `json:"id"`
	}{id})
	if err != nil {
		return "", err
	}
	m[StampKey] = stamp
	out, err := json.Marshal(m)
	if err != nil {
		return "", err
	}
	return string(out), nil
}

// StampID returns the id of proxyq's stamp in a message's attributes, and whether there is one.
// Attributes that are not a JSON object, or whose StampKey value is not {"id": "<string>"},
// carry no stamp.
func StampID(attributes string) (string, bool) {
	if !strings.Contains(attributes, StampKey) { // cheap skip for the producer's other messages
		return "", false
	}
	var a map[string]json.RawMessage
	if json.Unmarshal([]byte(attributes), &a) != nil {
		return "", false
	}
	raw, ok := a[StampKey]
	if !ok {
		return "", false
	}
	var s struct {
		ID *string `json:"id"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if dec.Decode(&s) != nil || s.ID == nil || *s.ID == "" {
		return "", false
	}
	return *s.ID, true
}

// FindOptions bounds FindStamped. Zero values mean the defaults.
type FindOptions struct {
	PageSize int // messages per page, 1–100; default 50
	MaxPages int // pages to read at most; default 10
	// NotBefore ends the search at the first message created before it: a message proxyq
	// created cannot be older than its first attempt. Set it to the first attempt's start
	// minus a margin for clock skew. Zero reads until MaxPages or the conversation's start.
	NotBefore time.Time
	// BeforePage is called before each page's request (see ListOptions).
	BeforePage func(ctx context.Context, page int) error
}

// FindResult is what FindStamped learned.
type FindResult struct {
	// Message is the message carrying the stamp, nil when none was found.
	Message *Message
	// Complete is true when the search covered every message that could be ours: it reached
	// the conversation's first message or one created before NotBefore. Not found and Complete
	// means "not created" (once Twilio's list has caught up: the caller's settle window).
	// Not found and not Complete (MaxPages ran out) proves nothing.
	Complete bool
	Pages    int // pages read
	Scanned  int // messages looked at
}

// FindStamped looks for the message whose attributes carry proxyq's stamp id, listing the
// conversation's messages newest first (Order=desc), page by page, within FindOptions' bounds.
// The match is on the stamp alone: bodies, authors and times are never compared, so two
// messages with identical bodies are never confused. Errors are ListMessages'.
func (c *Client) FindStamped(ctx context.Context, conv Conversation, id string, opt FindOptions) (FindResult, error) {
	var res FindResult
	if id == "" {
		return res, invalid("StampID", "must not be empty")
	}
	more, err := c.eachMessagePage(ctx, conv, ListOptions{Order: OrderDesc, PageSize: opt.PageSize, MaxPages: opt.MaxPages, BeforePage: opt.BeforePage},
		func(ms []Message) bool {
			res.Pages++
			for i := range ms {
				res.Scanned++
				if got, ok := StampID(ms[i].Attributes); ok && got == id {
					m := ms[i]
					res.Message = &m
					return false
				}
				if !opt.NotBefore.IsZero() && !ms[i].DateCreated.IsZero() && ms[i].DateCreated.Before(opt.NotBefore) {
					res.Complete = true
					return false
				}
			}
			return true
		})
	if err != nil {
		return FindResult{}, err
	}
	if res.Message == nil && !more {
		res.Complete = true
	}
	return res, nil
}
