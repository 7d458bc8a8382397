package worker

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/proxyq/proxyq/tasks"
)

// proxyq_attempts_total and proxyq_request_duration_seconds name the API each message went to.
func TestMetricsNameTheAPI(t *testing.T) {
	t.Parallel()
	f := newConvFixture(t, nil)
	m := NewMetrics(prometheus.NewPedanticRegistry())
	f.h.metrics = m
	f.runToEnd(t, "conv-m", tasks.ConversationPayload{ConversationSID: convCH(7), Author: "clinic", Body: "hi"})
	if err := f.run(t, "conv-m", tasks.ConversationPayload{ConversationSID: convCH(7), Author: "clinic", Body: "hi"}); err != nil {
		t.Fatal(err) // a second delivery: a duplicate
	}
	pf := &handlerFixture{h: f.h}
	if err := pf.run(t, "proxy-m", testPayload("hello")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		outcome, api string
		want         float64
	}{
		{outcomeSent, apiConversations, 1},
		{outcomeDuplicate, apiConversations, 1},
		{outcomeSent, apiProxy, 1},
		{outcomeDuplicate, apiProxy, 0},
	} {
		var d dto.Metric
		if err := m.Attempts.WithLabelValues(c.outcome, c.api).Write(&d); err != nil {
			t.Fatal(err)
		}
		if got := d.GetCounter().GetValue(); got != c.want {
			t.Errorf("proxyq_attempts_total{outcome=%q,api=%q} = %v, want %v", c.outcome, c.api, got, c.want)
		}
	}
	for _, api := range []string{apiProxy, apiConversations} {
		var d dto.Metric
		if err := m.RequestDuration.WithLabelValues("create", api).(prometheus.Histogram).Write(&d); err != nil {
			t.Fatal(err)
		}
		if n := d.GetHistogram().GetSampleCount(); n != 1 {
			t.Errorf("proxyq_request_duration_seconds{operation=\"create\",api=%q} count = %d, want 1", api, n)
		}
	}
}
