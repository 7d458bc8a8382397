package worker

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/proxyq/proxyq/proxyclient"
	"github.com/proxyq/proxyq/tasks"
)

const (
	testKS = "KS00000000000000000000000000000001"
	testKC = "KC00000000000000000000000000000001"
)

func testInteraction(sid, body string, media []string, created time.Time) proxyclient.MessageInteraction {
	data, _ := json.Marshal(proxyclient.InteractionData{Body: body, MediaURLs: media})
	return proxyclient.MessageInteraction{
		SID: sid, ServiceSID: testKS, SessionSID: testKC, ParticipantSID: testKP, Type: "message",
		Data: string(data), DateCreated: created, OutboundResourceSID: "SM" + sid[2:], OutboundResourceStatus: "queued",
	}
}

func TestMatchInteractions(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	now := start.Add(2 * time.Minute)
	skew := time.Minute
	p := tasks.Payload{ServiceSID: testKS, SessionSID: testKC, ParticipantSID: testKP, Body: "hello"}
	withMedia := p
	withMedia.MediaURLs = []string{"https://example.com/a.png"}

	voice := testInteraction("KI02", "hello", nil, start)
	voice.Type = "voice"
	otherParticipant := testInteraction("KI03", "hello", nil, start)
	otherParticipant.ParticipantSID = "KP00000000000000000000000000000002"
	noData := testInteraction("KI04", "", nil, start)
	noData.Data = ""

	cases := []struct {
		name string
		p    tasks.Payload
		list []proxyclient.MessageInteraction
		want []string
	}{
		{"same body after start", p, []proxyclient.MessageInteraction{testInteraction("KI01", "hello", nil, start.Add(time.Second))}, []string{"KI01"}},
		{"different body", p, []proxyclient.MessageInteraction{testInteraction("KI01", "hello!", nil, start)}, nil},
		{"voice interaction", p, []proxyclient.MessageInteraction{voice}, nil},
		{"another participant", p, []proxyclient.MessageInteraction{otherParticipant}, nil},
		{"no data", p, []proxyclient.MessageInteraction{noData}, nil},
		// Twilio's clock may run behind ours, and date_created is truncated to the second.
		{"created before start within skew", p, []proxyclient.MessageInteraction{testInteraction("KI01", "hello", nil, start.Add(-59*time.Second))}, []string{"KI01"}},
		{"created before start beyond skew", p, []proxyclient.MessageInteraction{testInteraction("KI01", "hello", nil, start.Add(-61*time.Second))}, nil},
		{"created after now beyond skew", p, []proxyclient.MessageInteraction{testInteraction("KI01", "hello", nil, now.Add(61*time.Second))}, nil},
		{"media listed and equal", withMedia, []proxyclient.MessageInteraction{testInteraction("KI01", "hello", withMedia.MediaURLs, start)}, []string{"KI01"}},
		{"media listed and different", withMedia, []proxyclient.MessageInteraction{testInteraction("KI01", "hello", []string{"https://example.com/b.png"}, start)}, nil},
		{"media not listed by Twilio", withMedia, []proxyclient.MessageInteraction{testInteraction("KI01", "hello", nil, start)}, []string{"KI01"}},
		// List order is undocumented: candidates come back oldest first, then by SID.
		{"identical bodies ordered oldest first", p, []proxyclient.MessageInteraction{
			testInteraction("KI09", "hello", nil, start.Add(20*time.Second)),
			testInteraction("KI05", "hello", nil, start.Add(10*time.Second)),
			testInteraction("KI01", "hello", nil, start.Add(20*time.Second)),
		}, []string{"KI05", "KI01", "KI09"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := matchInteractions(tc.list, tc.p, start, now, skew)
			var sids []string
			for _, g := range got {
				sids = append(sids, g.SID)
			}
			if len(sids) != len(tc.want) {
				t.Fatalf("matched %v, want %v", sids, tc.want)
			}
			for i := range sids {
				if sids[i] != tc.want[i] {
					t.Fatalf("matched %v, want %v", sids, tc.want)
				}
			}
		})
	}
}
