package proxyclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	fastjson "github.com/segmentio/encoding/json"
)

// ErrNoData is returned by DecodeData when the interaction's data field is empty/null.
var ErrNoData = errors.New("proxyclient: interaction has no data")

// MessageInteraction is Twilio's MessageInteraction resource. Every field may be null
// in the API; null decodes to "" (or the zero time). Status and type values are kept as
// opaque strings: Twilio has added and removed values over time.
type MessageInteraction struct {
	SID                    string    `json:"sid"`
	AccountSID             string    `json:"account_sid"`
	ServiceSID             string    `json:"service_sid"`
	SessionSID             string    `json:"session_sid"`
	ParticipantSID         string    `json:"participant_sid"`
	Data                   string    `json:"data"` // a JSON string holding an object; see DecodeData
	Type                   string    `json:"type"` // message, voice, unknown
	InboundParticipantSID  string    `json:"inbound_participant_sid"`
	InboundResourceSID     string    `json:"inbound_resource_sid"`
	InboundResourceStatus  string    `json:"inbound_resource_status"`
	InboundResourceType    string    `json:"inbound_resource_type"`
	InboundResourceURL     string    `json:"inbound_resource_url"`
	OutboundParticipantSID string    `json:"outbound_participant_sid"`
	OutboundResourceSID    string    `json:"outbound_resource_sid"` // the Message, SM…
	OutboundResourceStatus string    `json:"outbound_resource_status"`
	OutboundResourceType   string    `json:"outbound_resource_type"` // "Message"
	OutboundResourceURL    string    `json:"outbound_resource_url"`
	DateCreated            time.Time `json:"date_created"`
	DateUpdated            time.Time `json:"date_updated"`
	URL                    string    `json:"url"`
}

// UnmarshalJSON decodes Twilio's representation. Dates are read leniently (RFC 3339,
// else RFC 1123) and an unreadable date becomes the zero time rather than an error: a
// create that succeeded must not look failed because of a date format.
func (m *MessageInteraction) UnmarshalJSON(b []byte) error { return m.decodeBody(b) }

// decodeBody is UnmarshalJSON, called directly for a create's answer (client.go, decodeJSON).
func (m *MessageInteraction) decodeBody(b []byte) error {
	type plain MessageInteraction // no methods: avoids recursion
	var w struct {
		plain
		DateCreated *string `json:"date_created"`
		DateUpdated *string `json:"date_updated"`
	}
	// Every create's answer comes through here: segmentio's decoder reads JSON as
	// encoding/json does (FuzzDecodeBodyAsEncodingJSON) in about a third of the time.
	if err := fastjson.Unmarshal(b, &w); err != nil {
		return err
	}
	*m = MessageInteraction(w.plain)
	m.DateCreated = parseTwilioTime(w.DateCreated)
	m.DateUpdated = parseTwilioTime(w.DateUpdated)
	return nil
}

func parseTwilioTime(s *string) time.Time {
	if s == nil || *s == "" {
		return time.Time{}
	}
	for _, layout := range []string{time.RFC3339Nano, time.RFC1123Z, time.RFC1123} {
		if t, err := time.Parse(layout, *s); err == nil {
			return t.UTC()
		}
	}
	return time.Time{}
}

// InteractionData is the object inside MessageInteraction.Data.
type InteractionData struct {
	Body string `json:"body"`
	// MediaURLs is what proxytest writes when media was sent; Twilio documents only body.
	MediaURLs []string `json:"media_urls,omitempty"`
}

// DecodeData decodes Data, a JSON string holding an object such as {"body":"hello"}.
// It returns ErrNoData when Data is empty, or a wrapped *json.SyntaxError /
// *json.UnmarshalTypeError (whose text does not quote the body).
func (m *MessageInteraction) DecodeData() (InteractionData, error) {
	var d InteractionData
	if strings.TrimSpace(m.Data) == "" {
		return d, ErrNoData
	}
	if err := json.Unmarshal([]byte(m.Data), &d); err != nil {
		return InteractionData{}, fmt.Errorf("proxyclient: decode interaction data: %w", err)
	}
	return d, nil
}

// CreateParams are the arguments of CreateMessageInteraction.
type CreateParams struct {
	ServiceSID     string   // KS…
	SessionSID     string   // KC…
	ParticipantSID string   // KP…, the recipient
	Body           string   // message text; Body or MediaURLs is required
	MediaURLs      []string // sent as repeated MediaUrl keys; Twilio calls it "reserved"
}

// CreateMessageInteraction sends a message to one participant of a session (POST
// …/Participants/{KP}/MessageInteractions). Any 2xx is success.
//
// Errors: *ValidationError (bad SID, nothing to send; nothing was sent), *Error,
// *TransportError, *DecodeError. A *DecodeError or a *TransportError with
// RequestWritten means the interaction may exist: see Classify.
func (c *Client) CreateMessageInteraction(ctx context.Context, p CreateParams) (*MessageInteraction, error) {
	if err := validateParticipantPath(p.ServiceSID, p.SessionSID, p.ParticipantSID); err != nil {
		return nil, err
	}
	if p.Body == "" && len(p.MediaURLs) == 0 {
		return nil, invalid("Body", "or MediaURLs is required")
	}
	form := url.Values{}
	if p.Body != "" {
		form.Set("Body", p.Body)
	}
	for i, m := range p.MediaURLs {
		if m == "" {
			return nil, invalid("MediaURLs["+strconv.Itoa(i)+"]", "must not be empty")
		}
		// Twilio's array encoding: the key repeats, no brackets.
		form.Add("MediaUrl", m)
	}
	u := c.resourceURL("Services", p.ServiceSID, "Sessions", p.SessionSID, "Participants", p.ParticipantSID, "MessageInteractions")
	var mi MessageInteraction
	if err := c.do(ctx, http.MethodPost, u, form, &mi); err != nil {
		return nil, err
	}
	return &mi, nil
}

// FetchMessageInteraction reads one interaction (GET …/MessageInteractions/{KI}).
//
// Errors: *ValidationError (bad SID), *Error (404 with Twilio code 20404 when it does
// not exist), *TransportError, *DecodeError.
func (c *Client) FetchMessageInteraction(ctx context.Context, service, session, participant, interactionSID string) (*MessageInteraction, error) {
	if err := validateParticipantPath(service, session, participant); err != nil {
		return nil, err
	}
	if !ValidSID("KI", interactionSID) {
		return nil, invalid("InteractionSID", "must match ^KI[0-9a-fA-F]{32}$")
	}
	u := c.resourceURL("Services", service, "Sessions", session, "Participants", participant, "MessageInteractions", interactionSID)
	var mi MessageInteraction
	if err := c.do(ctx, http.MethodGet, u, nil, &mi); err != nil {
		return nil, err
	}
	return &mi, nil
}

// Defaults and bounds for ListOptions.
const (
	DefaultPageSize = 1000
	MaxPageSize     = 1000
	DefaultMaxPages = 10
)

// ListOptions bounds a list. Zero values mean the defaults.
type ListOptions struct {
	PageSize int // items per page, 1–1000; default 1000 (Twilio's own default is 50)
	MaxPages int // pages to fetch at most; default 10
	// BeforePage, when set, is called before each page's request (page counts from 0); an
	// error stops the listing and is returned as is. Rate limiters use it: each page is one
	// request against the Service's read budget.
	BeforePage func(ctx context.Context, page int) error
}

// InteractionPage is the result of a list across pages.
type InteractionPage struct {
	// Interactions in the order Twilio returned them. The order is not documented:
	// do not assume newest-first.
	Interactions []MessageInteraction
	// Truncated is true when MaxPages was reached and Twilio still had a next page.
	Truncated bool
	// Pages is how many pages were fetched.
	Pages int
}

// ListMessageInteractions lists a participant's interactions (GET
// …/Participants/{KP}/MessageInteractions?PageSize=N), following meta.next_page_url until
// it is null or MaxPages pages were read (then Truncated is set). Each page is one
// request bounded by HTTPTimeout.
//
// Errors: *ValidationError (bad SID or options), *Error, *TransportError, *DecodeError,
// and an error wrapping ErrUnsafeNextPage when next_page_url leaves the API's scheme
// and host (credentials would follow it). No partial result is returned with an error.
func (c *Client) ListMessageInteractions(ctx context.Context, service, session, participant string, opt ListOptions) (*InteractionPage, error) {
	if err := validateParticipantPath(service, session, participant); err != nil {
		return nil, err
	}
	switch {
	case opt.PageSize < 0 || opt.PageSize > MaxPageSize:
		return nil, invalid("PageSize", "must be between 1 and 1000 (0 means 1000)")
	case opt.MaxPages < 0:
		return nil, invalid("MaxPages", "must not be negative (0 means 10)")
	}
	if opt.PageSize == 0 {
		opt.PageSize = DefaultPageSize
	}
	if opt.MaxPages == 0 {
		opt.MaxPages = DefaultMaxPages
	}

	u := c.resourceURL("Services", service, "Sessions", session, "Participants", participant, "MessageInteractions")
	u.RawQuery = url.Values{"PageSize": {strconv.Itoa(opt.PageSize)}}.Encode()

	page := &InteractionPage{Interactions: []MessageInteraction{}}
	for {
		var lr struct {
			Interactions []MessageInteraction `json:"interactions"`
			Meta         struct {
				NextPageURL *string `json:"next_page_url"`
			} `json:"meta"`
		}
		if opt.BeforePage != nil {
			if err := opt.BeforePage(ctx, page.Pages); err != nil {
				return nil, err
			}
		}
		if err := c.do(ctx, http.MethodGet, u, nil, &lr); err != nil {
			return nil, err
		}
		page.Interactions = append(page.Interactions, lr.Interactions...)
		page.Pages++
		if lr.Meta.NextPageURL == nil || *lr.Meta.NextPageURL == "" {
			return page, nil
		}
		if page.Pages >= opt.MaxPages {
			page.Truncated = true
			return page, nil
		}
		next, err := c.nextPageURL(u, *lr.Meta.NextPageURL)
		if err != nil {
			return nil, err
		}
		u = next
	}
}

// nextPageURL resolves a next_page_url (absolute per Twilio; a relative one is resolved
// against the current page) and refuses it unless it has the base URL's scheme and
// host, so the Authorization header never travels elsewhere or in clear text.
func (c *Client) nextPageURL(cur *url.URL, next string) (*url.URL, error) {
	ref, err := url.Parse(next)
	if err != nil {
		// Not wrapped: url.Parse's error quotes the URL, query string included.
		return nil, &DecodeError{Method: http.MethodGet, Path: cur.EscapedPath(), StatusCode: http.StatusOK,
			Err: errors.New("meta.next_page_url is not a URL")}
	}
	u := cur.ResolveReference(ref)
	if !strings.EqualFold(u.Scheme, c.base.Scheme) || canonicalHost(u) != canonicalHost(c.base) || u.User != nil {
		return nil, fmt.Errorf("proxyclient: GET %s: %w", cur.EscapedPath(), ErrUnsafeNextPage)
	}
	u.Fragment, u.RawFragment = "", ""
	return u, nil
}

// canonicalHost is host:port, lower-cased, with the scheme's default port made explicit
// so that "proxy.twilio.com" and "proxy.twilio.com:443" compare equal.
func canonicalHost(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[strings.ToLower(u.Scheme)]
	}
	return net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

func validateParticipantPath(service, session, participant string) error {
	switch {
	case !ValidSID("KS", service):
		return invalid("ServiceSID", "must match ^KS[0-9a-fA-F]{32}$")
	case !ValidSID("KC", session):
		return invalid("SessionSID", "must match ^KC[0-9a-fA-F]{32}$")
	case !ValidSID("KP", participant):
		return invalid("ParticipantSID", "must match ^KP[0-9a-fA-F]{32}$")
	}
	return nil
}
