package conversations

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// MaxBodyChars is Twilio's limit on a Conversations message body ("can be up to 1,600
// characters long", Conversations v1 description, CreateConversationMessageRequest.Body).
const MaxBodyChars = 1600

// Conversation names one conversation: its SID and, optionally, the Conversation Service it
// belongs to. An empty ServiceSID means the account's default Conversation Service and the
// short paths (/v1/Conversations/{CH}/…); a set one the Service-scoped paths
// (/v1/Services/{IS}/Conversations/{CH}/…).
type Conversation struct {
	ServiceSID      string // IS…, optional
	ConversationSID string // CH…
}

func (c Conversation) validate() error {
	if c.ServiceSID != "" {
		if err := checkSID("ServiceSID", PrefixChatService, c.ServiceSID); err != nil {
			return err
		}
	}
	return checkSID("ConversationSID", PrefixConversation, c.ConversationSID)
}

// segments is the conversation's path below /v1.
func (c Conversation) segments(more ...string) []string {
	var s []string
	if c.ServiceSID != "" {
		s = []string{"Services", c.ServiceSID}
	}
	s = append(s, "Conversations", c.ConversationSID)
	return append(s, more...)
}

// Message is a Conversation Message as Twilio returns it. The body and the media's file names
// are deliberately not decoded: proxyq never needs them and must not hold message text it
// could leak into logs or records. Attributes is the JSON string the message was created with
// ("{}" when none): it carries proxyq's stamp (see StampID).
type Message struct {
	SID             string    // IM…
	AccountSID      string    // AC…
	ConversationSID string    // CH…
	ChatServiceSID  string    // IS…, only on Service-scoped answers
	Index           int64     // position in the conversation, from 0
	Author          string    // "system" when not given
	ParticipantSID  string    // MB… of the author, when the author is a participant
	Attributes      string    // JSON string, as given at creation
	MediaSIDs       []string  // ME… of attached media
	ContentSID      string    // HX… when created from a template
	Delivery        *Delivery // nil until Twilio has an aggregate (chat-only conversations)
	DateCreated     time.Time // UTC
	DateUpdated     time.Time // UTC
	URL             string
}

// Delivery is a message's aggregated delivery receipt. Total counts the non-chat recipients;
// the others are "all", "some" or "none" (kept as strings: Twilio has added values before).
type Delivery struct {
	Total       int    `json:"total"`
	Sent        string `json:"sent"`
	Delivered   string `json:"delivered"`
	Read        string `json:"read"`
	Failed      string `json:"failed"`
	Undelivered string `json:"undelivered"`
}

// UnmarshalJSON decodes Twilio's Message JSON; nulls become zero values and unreadable dates
// the zero time (a created message must not look failed because of a date format).
func (m *Message) UnmarshalJSON(b []byte) error {
	var w struct {
		SID             string  `json:"sid"`
		AccountSID      string  `json:"account_sid"`
		ConversationSID string  `json:"conversation_sid"`
		ChatServiceSID  *string `json:"chat_service_sid"`
		Index           *int64  `json:"index"`
		Author          *string `json:"author"`
		ParticipantSID  *string `json:"participant_sid"`
		Attributes      *string `json:"attributes"`
		Media           []struct {
			SID string `json:"sid"`
		} `json:"media"`
		ContentSID  *string   `json:"content_sid"`
		Delivery    *Delivery `json:"delivery"`
		DateCreated *string   `json:"date_created"`
		DateUpdated *string   `json:"date_updated"`
		URL         *string   `json:"url"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*m = Message{SID: w.SID, AccountSID: w.AccountSID, ConversationSID: w.ConversationSID,
		ChatServiceSID: deref(w.ChatServiceSID), Author: deref(w.Author), ParticipantSID: deref(w.ParticipantSID),
		Attributes: deref(w.Attributes), ContentSID: deref(w.ContentSID), Delivery: w.Delivery,
		DateCreated: parseTime(w.DateCreated), DateUpdated: parseTime(w.DateUpdated), URL: deref(w.URL)}
	if w.Index != nil {
		m.Index = *w.Index
	}
	for _, md := range w.Media {
		m.MediaSIDs = append(m.MediaSIDs, md.SID)
	}
	return nil
}

// Receipt is one recipient's delivery receipt for a message (GET …/Messages/{IM}/Receipts).
type Receipt struct {
	SID               string // DY…
	AccountSID        string
	ConversationSID   string
	ChatServiceSID    string
	MessageSID        string // IM…
	ParticipantSID    string // MB…, the recipient
	ChannelMessageSID string // SM… for SMS, WA… for WhatsApp
	// Status is read, failed, delivered, undelivered or sent (opaque: Twilio may add values).
	Status      string
	ErrorCode   int // Twilio error code of a failed/undelivered receipt; 0 when null
	DateCreated time.Time
	DateUpdated time.Time
}

// UnmarshalJSON decodes Twilio's receipt JSON; nulls become zero values.
func (r *Receipt) UnmarshalJSON(b []byte) error {
	var w struct {
		SID               string          `json:"sid"`
		AccountSID        string          `json:"account_sid"`
		ConversationSID   string          `json:"conversation_sid"`
		ChatServiceSID    *string         `json:"chat_service_sid"`
		MessageSID        string          `json:"message_sid"`
		ParticipantSID    *string         `json:"participant_sid"`
		ChannelMessageSID *string         `json:"channel_message_sid"`
		Status            *string         `json:"status"`
		ErrorCode         json.RawMessage `json:"error_code"`
		DateCreated       *string         `json:"date_created"`
		DateUpdated       *string         `json:"date_updated"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*r = Receipt{SID: w.SID, AccountSID: w.AccountSID, ConversationSID: w.ConversationSID,
		ChatServiceSID: deref(w.ChatServiceSID), MessageSID: w.MessageSID, ParticipantSID: deref(w.ParticipantSID),
		ChannelMessageSID: deref(w.ChannelMessageSID), Status: deref(w.Status),
		DateCreated: parseTime(w.DateCreated), DateUpdated: parseTime(w.DateUpdated)}
	code, err := parseErrorCode(w.ErrorCode)
	if err != nil {
		return err
	}
	r.ErrorCode = code
	return nil
}

// parseErrorCode reads error_code: null, a number or (as some Twilio answers have it) a string
// of digits. Anything else is an error: a delivery error that cannot be read must not look
// like "no error".
func parseErrorCode(raw json.RawMessage) (int, error) {
	s := strings.TrimSpace(string(raw))
	if s == "" || s == "null" {
		return 0, nil
	}
	if strings.HasPrefix(s, `"`) {
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, err
		}
		if s == "" {
			return 0, nil
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, &json.UnmarshalTypeError{Value: "error_code", Type: reflect.TypeFor[int](), Field: "error_code"}
	}
	return n, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func parseTime(s *string) time.Time {
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

// CreateParams are the arguments of CreateMessage. Body, MediaSID or ContentSID is required.
type CreateParams struct {
	Conversation
	Author string // Twilio's default is "system"
	Body   string // at most MaxBodyChars characters
	// MediaSID is one Media SID (ME…) uploaded to Twilio's Media Content Service; Twilio's
	// description has MediaSid as a single string, not a list.
	MediaSID string
	// ContentSID (HX…) sends a Content template; Twilio then ignores Body and MediaSID.
	ContentSID string
	// ContentVariables is a JSON object resolving the template's variables; only with ContentSID.
	ContentVariables string
	// Attributes is the JSON the message keeps (a JSON object); see StampAttributes.
	Attributes string
	// WebhookEnabled, when set, is sent as X-Twilio-Webhook-Enabled: true|false (whether
	// Twilio's own webhooks fire for this create). Nil sends no header (Twilio's default).
	WebhookEnabled *bool
}

// Validate checks p as CreateMessage does. It returns a *proxyclient.ValidationError.
func (p CreateParams) Validate() error {
	if err := p.Conversation.validate(); err != nil {
		return err
	}
	switch {
	case p.MediaSID != "" && !ValidSID(PrefixMedia, p.MediaSID):
		if strings.Contains(p.MediaSID, "://") {
			return invalid("MediaSID", "must be a Media SID (ME…), not a URL: upload the file to Twilio's Media Content Service first")
		}
		return invalid("MediaSID", SIDRule(PrefixMedia))
	case p.ContentSID != "" && !ValidSID(PrefixContent, p.ContentSID):
		return invalid("ContentSID", SIDRule(PrefixContent))
	case p.ContentVariables != "" && p.ContentSID == "":
		return invalid("ContentVariables", "needs ContentSID")
	case p.ContentVariables != "" && !isJSONObject(p.ContentVariables):
		return invalid("ContentVariables", "must be a JSON object")
	case p.Attributes != "" && !isJSONObject(p.Attributes):
		return invalid("Attributes", "must be a JSON object")
	case !utf8.ValidString(p.Body):
		return invalid("Body", "must be valid UTF-8")
	case utf8.RuneCountInString(p.Body) > MaxBodyChars:
		return invalid("Body", "must be at most "+strconv.Itoa(MaxBodyChars)+" characters")
	case p.Body == "" && p.MediaSID == "" && p.ContentSID == "":
		return invalid("Body", "or MediaSID or ContentSID is required")
	}
	return nil
}

func isJSONObject(s string) bool {
	var m map[string]json.RawMessage
	return json.Unmarshal([]byte(s), &m) == nil && m != nil
}

// CreateMessage adds a message to a conversation (POST /v1/Conversations/{CH}/Messages, or
// /v1/Services/{IS}/Conversations/{CH}/Messages). Any 2xx is success (Twilio answers 201).
//
// Errors: *proxyclient.ValidationError (nothing was sent), *proxyclient.Error,
// *proxyclient.TransportError, *proxyclient.DecodeError. A *DecodeError or a *TransportError
// with RequestWritten means the message may exist: see Classify, and FindStamped to know.
func (c *Client) CreateMessage(ctx context.Context, p CreateParams) (*Message, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	form := url.Values{}
	set := func(k, v string) {
		if v != "" {
			form.Set(k, v)
		}
	}
	set("Author", p.Author)
	set("Body", p.Body)
	set("MediaSid", p.MediaSID)
	set("ContentSid", p.ContentSID)
	set("ContentVariables", p.ContentVariables)
	set("Attributes", p.Attributes)
	var header http.Header
	if p.WebhookEnabled != nil {
		header = http.Header{"X-Twilio-Webhook-Enabled": {strconv.FormatBool(*p.WebhookEnabled)}}
	}
	var m Message
	if err := c.do(ctx, request{method: http.MethodPost, u: c.resourceURL(p.Conversation.segments("Messages")...), form: form, header: header}, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// FetchMessage reads one message (GET …/Conversations/{CH}/Messages/{IM}).
//
// Errors: *proxyclient.ValidationError, *proxyclient.Error (404 when it does not exist),
// *proxyclient.TransportError, *proxyclient.DecodeError. Classify them with ClassifyRead.
func (c *Client) FetchMessage(ctx context.Context, conv Conversation, messageSID string) (*Message, error) {
	if err := conv.validate(); err != nil {
		return nil, err
	}
	if err := checkSID("MessageSID", PrefixMessage, messageSID); err != nil {
		return nil, err
	}
	var m Message
	if err := c.do(ctx, request{method: http.MethodGet, u: c.resourceURL(conv.segments("Messages", messageSID)...)}, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// Order is the order of a message list, by index.
type Order string

const (
	OrderAsc  Order = "asc"  // oldest first (Twilio's default)
	OrderDesc Order = "desc" // newest first
)

// Bounds of ListOptions (Twilio's description: Messages PageSize 1–100, Receipts 1–50).
const (
	MaxMessagePageSize     = 100
	DefaultMessagePageSize = 50
	MaxReceiptPageSize     = 50
	DefaultMaxPages        = 10
)

// ListOptions bounds a list. Zero values mean the defaults.
type ListOptions struct {
	Order    Order // "" sends none (Twilio: asc); only for messages
	PageSize int   // items per page; default 50, at most 100 for messages and 50 for receipts
	MaxPages int   // pages to fetch at most; default 10
	// BeforePage, when set, is called before each page's request (page counts from 0); an
	// error stops the listing and is returned as is (rate limiters: each page is one request).
	BeforePage func(ctx context.Context, page int) error
}

func (o ListOptions) normalise(maxPageSize int, ordered bool) (ListOptions, error) {
	switch {
	case o.PageSize < 0 || o.PageSize > maxPageSize:
		return o, invalid("PageSize", "must be between 1 and "+strconv.Itoa(maxPageSize)+" (0 means 50)")
	case o.MaxPages < 0:
		return o, invalid("MaxPages", "must not be negative (0 means 10)")
	case o.Order != "" && o.Order != OrderAsc && o.Order != OrderDesc:
		return o, invalid("Order", `must be "asc" or "desc"`)
	case o.Order != "" && !ordered:
		return o, invalid("Order", "is not a parameter of this list")
	}
	if o.PageSize == 0 {
		o.PageSize = min(DefaultMessagePageSize, maxPageSize)
	}
	if o.MaxPages == 0 {
		o.MaxPages = DefaultMaxPages
	}
	return o, nil
}

// MessagePage is the result of ListMessages.
type MessagePage struct {
	Messages  []Message // in the order asked for
	Pages     int       // pages fetched
	Truncated bool      // MaxPages was reached and Twilio had more
}

// ListMessages lists a conversation's messages (GET …/Messages?Order=…&PageSize=N), following
// meta.next_page_url (Twilio's PageToken) until it is null or MaxPages pages were read.
//
// Errors: *proxyclient.ValidationError, *proxyclient.Error, *proxyclient.TransportError,
// *proxyclient.DecodeError, and one wrapping proxyclient.ErrUnsafeNextPage when
// next_page_url leaves the API's host. No partial result is returned with an error.
func (c *Client) ListMessages(ctx context.Context, conv Conversation, opt ListOptions) (*MessagePage, error) {
	page := &MessagePage{Messages: []Message{}}
	more, err := c.eachMessagePage(ctx, conv, opt, func(ms []Message) bool {
		page.Messages = append(page.Messages, ms...)
		page.Pages++
		return true
	})
	if err != nil {
		return nil, err
	}
	page.Truncated = more
	return page, nil
}

// eachMessagePage calls fn with each page until fn returns false, the list ends or MaxPages
// pages were read. more reports whether Twilio had a next page that was not read.
func (c *Client) eachMessagePage(ctx context.Context, conv Conversation, opt ListOptions, fn func([]Message) bool) (more bool, err error) {
	if err := conv.validate(); err != nil {
		return false, err
	}
	opt, err = opt.normalise(MaxMessagePageSize, true)
	if err != nil {
		return false, err
	}
	u := c.resourceURL(conv.segments("Messages")...)
	q := url.Values{"PageSize": {strconv.Itoa(opt.PageSize)}}
	if opt.Order != "" {
		q.Set("Order", string(opt.Order))
	}
	u.RawQuery = q.Encode()
	for pages := 0; ; pages++ {
		if pages >= opt.MaxPages {
			return true, nil
		}
		var lr struct {
			Messages []Message `json:"messages"`
			Meta     listMeta  `json:"meta"`
		}
		if opt.BeforePage != nil {
			if err := opt.BeforePage(ctx, pages); err != nil {
				return false, err
			}
		}
		if err := c.do(ctx, request{method: http.MethodGet, u: u}, &lr); err != nil {
			return false, err
		}
		if !fn(lr.Messages) {
			return lr.Meta.next() != "", nil
		}
		if lr.Meta.next() == "" {
			return false, nil
		}
		if u, err = c.nextPageURL(u, lr.Meta.next()); err != nil {
			return false, err
		}
	}
}

type listMeta struct {
	NextPageURL *string `json:"next_page_url"`
}

func (m listMeta) next() string { return deref(m.NextPageURL) }

// ReceiptPage is the result of ListReceipts.
type ReceiptPage struct {
	Receipts  []Receipt
	Pages     int
	Truncated bool
}

// ListReceipts lists a message's per-recipient delivery receipts
// (GET …/Messages/{IM}/Receipts?PageSize=N), following next_page_url up to MaxPages pages.
// Order must be empty. Errors as ListMessages.
func (c *Client) ListReceipts(ctx context.Context, conv Conversation, messageSID string, opt ListOptions) (*ReceiptPage, error) {
	if err := conv.validate(); err != nil {
		return nil, err
	}
	if err := checkSID("MessageSID", PrefixMessage, messageSID); err != nil {
		return nil, err
	}
	opt, err := opt.normalise(MaxReceiptPageSize, false)
	if err != nil {
		return nil, err
	}
	u := c.resourceURL(conv.segments("Messages", messageSID, "Receipts")...)
	u.RawQuery = url.Values{"PageSize": {strconv.Itoa(opt.PageSize)}}.Encode()
	page := &ReceiptPage{Receipts: []Receipt{}}
	for {
		var lr struct {
			Receipts []Receipt `json:"delivery_receipts"`
			Meta     listMeta  `json:"meta"`
		}
		if opt.BeforePage != nil {
			if err := opt.BeforePage(ctx, page.Pages); err != nil {
				return nil, err
			}
		}
		if err := c.do(ctx, request{method: http.MethodGet, u: u}, &lr); err != nil {
			return nil, err
		}
		page.Receipts = append(page.Receipts, lr.Receipts...)
		page.Pages++
		if lr.Meta.next() == "" {
			return page, nil
		}
		if page.Pages >= opt.MaxPages {
			page.Truncated = true
			return page, nil
		}
		if u, err = c.nextPageURL(u, lr.Meta.next()); err != nil {
			return nil, err
		}
	}
}
