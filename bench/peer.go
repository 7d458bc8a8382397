package bench

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/proxyq/proxyq/proxyclient"
	"github.com/proxyq/proxyq/tasks"
	"github.com/proxyq/proxyq/worker"
)

// runner is one side of a comparison: a worker pool that can be started and stopped.
type runner interface {
	Start() error
	Shutdown()
}

// peerHandler is the naive sender: decode the payload, POST the form, fail on a non-2xx, write
// the interaction's SID and status as the task result.
type peerHandler struct {
	base   string
	client *http.Client
}

// peerPayload is the peer's own view of the JSON payload (it does not import our validation).
type peerPayload struct {
	ServiceSID     string   `json:"service_sid"`
	SessionSID     string   `json:"session_sid"`
	ParticipantSID string   `json:"participant_sid"`
	Body           string   `json:"body"`
	MediaURLs      []string `json:"media_url"`
}

func (h *peerHandler) ProcessTask(ctx context.Context, t *asynq.Task) error {
	var p peerPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return fmt.Errorf("decode: %v: %w", err, asynq.SkipRetry)
	}
	form := url.Values{"Body": {p.Body}}
	for _, m := range p.MediaURLs {
		form.Add("MediaUrl", m)
	}
	u := h.base + "/v1/Services/" + p.ServiceSID + "/Sessions/" + p.SessionSID + "/Participants/" + p.ParticipantSID + "/MessageInteractions"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(accountSID, authToken)
	resp, err := h.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		_, _ = io.Copy(io.Discard, resp.Body)
		return fmt.Errorf("twilio: %s", resp.Status)
	}
	var mi struct {
		SID    string `json:"sid"`
		Status string `json:"outbound_resource_status"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&mi); err != nil {
		return fmt.Errorf("twilio: decode answer: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	result, _ := json.Marshal(map[string]string{"interaction_sid": mi.SID, "outbound_status": mi.Status})
	if w := t.ResultWriter(); w != nil {
		if _, err := w.Write(result); err != nil {
			return err
		}
	}
	return nil
}

// httpClient is the peer's client: net/http's defaults with an idle pool as large as its
// concurrency, so that it does not pay for dialling a connection per request. (proxyq runs with
// proxyclient's own pool of 100 idle connections; on loopback the two measured the same.)
func httpClient(concurrency int) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = max(concurrency, 100)
	t.MaxIdleConnsPerHost = max(concurrency, 100)
	return &http.Client{Transport: t, Timeout: worker.DefaultHTTPTimeout}
}

type peerServer struct {
	srv *asynq.Server
	h   *peerHandler
}

// newPeer builds the naive peer: asynq defaults but for Concurrency.
func newPeer(redisOpt asynq.RedisConnOpt, apiURL string, concurrency int) *peerServer {
	srv := asynq.NewServer(redisOpt, asynq.Config{Concurrency: concurrency, LogLevel: asynq.ErrorLevel})
	return &peerServer{srv: srv, h: &peerHandler{base: apiURL, client: httpClient(concurrency)}}
}

func (p *peerServer) Start() error {
	mux := asynq.NewServeMux()
	mux.Handle(tasks.TypeSendInteraction, p.h)
	return p.srv.Start(mux)
}

func (p *peerServer) Shutdown() { p.srv.Shutdown() }

// proxyqOptions are the scenario's settings for the proxyq worker.
type proxyqOptions struct {
	Concurrency int
	MaxInFlight int
	RateLimit   float64
	// ServiceRate is the per-Service limit (requests/s). 0 means ample: the fake of scenarios
	// 1–6 has no per-Service cap and all their messages go to one Service, so the limiter runs
	// (its Redis cost is measured) without ever holding a message back.
	ServiceRate float64
	// DequeueLoops is worker.Config's (0: proxyq's default).
	DequeueLoops int
}

// newProxyq builds the proxyq worker as shipped, with a fresh metrics registry and a JSON logger
// at info level writing to io.Discard (the encoding cost is real, the output is not kept).
func newProxyq(redisOpt asynq.RedisConnOpt, apiURL string, o proxyqOptions) (*worker.Worker, error) {
	return newProxyqDeps(redisOpt, apiURL, o, worker.Deps{})
}

// newProxyqDeps is newProxyq with the delivery hook and tasks of extra (realistic.go).
func newProxyqDeps(redisOpt asynq.RedisConnOpt, apiURL string, o proxyqOptions, extra worker.Deps) (*worker.Worker, error) {
	// proxyclient's own transport, with an idle pool sized to the concurrency as `proxyq worker` does.
	api, err := proxyclient.New(proxyclient.Config{AccountSID: accountSID, AuthToken: authToken, BaseURL: apiURL, HTTPTimeout: worker.DefaultHTTPTimeout,
		MaxIdleConnsPerHost: o.Concurrency})
	if err != nil {
		return nil, err
	}
	return worker.New(worker.Config{
		// The peer reads asynq's default single queue; so does proxyq here, so that the two
		// differ only by the handler. proxyq's own default (three weighted queues) costs one
		// more dequeue round trip per message when the first queue tried is empty.
		Queues:        map[string]int{tasks.DefaultQueue: 1},
		Concurrency:   o.Concurrency,
		DequeueLoops:  o.DequeueLoops,
		MaxInFlight:   o.MaxInFlight,
		RateLimit:     o.RateLimit,
		ServiceLimits: worker.ServiceLimits{Rate: cmp.Or(o.ServiceRate, ampleServiceRate)},
	}, worker.Deps{
		Redis:      redisOpt,
		API:        api,
		Logger:     discardLogger(),
		Registerer: prometheus.NewRegistry(),
		Delivery:   extra.Delivery,
		Tasks:      extra.Tasks,
	})
}

func discardLogger() *zap.Logger {
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(io.Discard), zapcore.InfoLevel))
}
