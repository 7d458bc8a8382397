package validate

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

var promql = parser.NewParser(parser.Options{})

// metricNames returns the metric names an expression selects. Every selector
// must name its metric: a bare {label="x"} could match anything.
func metricNames(t *testing.T, expr string) []string {
	t.Helper()
	node, err := promql.ParseExpr(expr)
	if err != nil {
		t.Errorf("parse %q: %v", expr, err)
		return nil
	}
	var names []string
	parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		for _, m := range vs.LabelMatchers {
			if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
				name = m.Value
			}
		}
		if name == "" {
			t.Errorf("%q: selector %s names no metric", expr, vs)
		}
		names = append(names, name)
		return nil
	})
	return names
}

func TestPrometheusRules(t *testing.T) {
	t.Parallel()
	raw := readRepoFile(t, "deploy", "monitoring", "prometheus-rules.yaml")
	groups, errs := rulefmt.Parse(raw, false, model.LegacyValidation, promql, slog.New(slog.DiscardHandler))
	if len(errs) > 0 {
		t.Fatalf("prometheus-rules.yaml: %v", errs)
	}
	runbook := string(readRepoFile(t, "deploy", "monitoring", "RUNBOOK.md"))

	want := []string{"ProxyqArchivedGrowing", "ProxyqNoWorkers", "ProxyqQueueLatencyHigh", "ProxyqTwilioRateLimited", "ProxyqUndeliveredRatioHigh", "ProxyqUnknownOutcome"}
	var got []string
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("group %s: recording rule %q; this file holds alerts only", g.Name, r.Record)
				continue
			}
			got = append(got, r.Alert)
			t.Run(r.Alert, func(t *testing.T) {
				if r.For <= 0 {
					t.Errorf("for: unset; every alert waits before firing")
				}
				if s := r.Labels["severity"]; s != "critical" && s != "warning" {
					t.Errorf("severity %q, want critical or warning", s)
				}
				for _, a := range []string{"summary", "description", "runbook"} {
					if strings.TrimSpace(r.Annotations[a]) == "" {
						t.Errorf("annotation %s is empty", a)
					}
				}
				anchor := "RUNBOOK.md#" + strings.ToLower(r.Alert)
				if !strings.Contains(r.Annotations["runbook"], anchor) {
					t.Errorf("runbook annotation does not point at %s", anchor)
				}
				if !strings.Contains(runbook, "\n## "+r.Alert+"\n") {
					t.Errorf("RUNBOOK.md has no section \"## %s\"", r.Alert)
				}
				names := metricNames(t, r.Expr)
				if len(names) == 0 {
					t.Errorf("expr %q selects no metric", r.Expr)
				}
				for _, n := range names {
					if !metricAllowed(n) {
						t.Errorf("expr uses %q, which proxyq does not export", n)
					}
				}
			})
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("alerts = %v, want %v", got, want)
	}
}

// grafanaDashboard models the parts of Grafana's dashboard JSON checked here.
type grafanaDashboard struct {
	Inputs []struct {
		Name     string `json:"name"`
		Type     string `json:"type"`
		PluginID string `json:"pluginId"`
	} `json:"__inputs"`
	UID        string         `json:"uid"`
	Title      string         `json:"title"`
	Panels     []grafanaPanel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string             `json:"name"`
			Type       string             `json:"type"`
			Datasource *grafanaDatasource `json:"datasource"`
			Query      json.RawMessage    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type grafanaDatasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type grafanaPanel struct {
	ID         int                `json:"id"`
	Type       string             `json:"type"`
	Title      string             `json:"title"`
	Datasource *grafanaDatasource `json:"datasource"`
	GridPos    *struct {
		X, Y, W, H int
	} `json:"gridPos"`
	Targets []struct {
		RefID      string             `json:"refId"`
		Expr       string             `json:"expr"`
		Datasource *grafanaDatasource `json:"datasource"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"` // collapsed rows
}

var (
	rangeVar = regexp.MustCompile(`\[\$\{?__(rate_)?interval\}?\]`)
	otherVar = regexp.MustCompile(`\$\{?[A-Za-z_][A-Za-z0-9_]*\}?`)
	labelVal = regexp.MustCompile(`^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)$`)
)

// grafanaToPromQL substitutes Grafana's template variables so the expression
// parses as plain PromQL.
func grafanaToPromQL(expr string) string {
	expr = rangeVar.ReplaceAllString(expr, "[5m]")
	return otherVar.ReplaceAllString(expr, "x")
}

func TestGrafanaDashboard(t *testing.T) {
	t.Parallel()
	raw := readRepoFile(t, "deploy", "monitoring", "grafana-dashboard.json")
	var d grafanaDashboard
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("dashboard needs a uid and a title")
	}
	const ds = "${DS_PROMETHEUS}"
	if !slices.ContainsFunc(d.Inputs, func(in struct {
		Name     string `json:"name"`
		Type     string `json:"type"`
		PluginID string `json:"pluginId"`
	}) bool {
		return in.Name == "DS_PROMETHEUS" && in.Type == "datasource" && in.PluginID == "prometheus"
	}) {
		t.Errorf("__inputs lacks the DS_PROMETHEUS prometheus datasource input")
	}
	checkDS := func(where string, got *grafanaDatasource) {
		if got == nil || got.UID != ds || got.Type != "prometheus" {
			t.Errorf("%s: datasource %+v, want prometheus %s", where, got, ds)
		}
	}

	used := map[string]bool{}
	ids := map[int]bool{}
	var walk func([]grafanaPanel)
	walk = func(panels []grafanaPanel) {
		for _, p := range panels {
			if ids[p.ID] || p.ID == 0 {
				t.Errorf("panel %q: id %d missing or not unique", p.Title, p.ID)
			}
			ids[p.ID] = true
			if p.GridPos == nil || p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
				t.Errorf("panel %q: bad gridPos %+v", p.Title, p.GridPos)
			}
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			checkDS("panel "+p.Title, p.Datasource)
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no queries", p.Title)
			}
			for _, tg := range p.Targets {
				checkDS("panel "+p.Title+" target "+tg.RefID, tg.Datasource)
				names := metricNames(t, grafanaToPromQL(tg.Expr))
				if len(names) == 0 {
					t.Errorf("panel %q target %s selects no metric", p.Title, tg.RefID)
				}
				for _, n := range names {
					if !metricAllowed(n) {
						t.Errorf("panel %q uses %q, which proxyq does not export", p.Title, n)
					}
					used[n] = true
				}
			}
		}
	}
	walk(d.Panels)

	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		checkDS("variable "+v.Name, v.Datasource)
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			if err := json.Unmarshal(v.Query, &q.Query); err != nil {
				t.Errorf("variable %s: query %s", v.Name, v.Query)
			}
		}
		m := labelVal.FindStringSubmatch(q.Query)
		if m == nil || !metricAllowed(m[1]) {
			t.Errorf("variable %s: query %q, want label_values(<exported metric>, <label>)", v.Name, q.Query)
		}
	}

	// The panels the dashboard exists for.
	for _, n := range []string{
		"proxyq_attempts_total", "proxyq_twilio_errors_total", "proxyq_request_duration_seconds_bucket",
		"proxyq_in_flight_sends", "proxyq_limit_factor", "asynq_tasks_enqueued_total",
		"asynq_queue_latency_seconds", "proxyq_worker_up",
		"proxyq_delivery_status_total", "proxyq_delivery_callbacks_total", "proxyq_delivery_create_to_delivered_seconds_bucket",
	} {
		if !used[n] {
			t.Errorf("no panel shows %s", n)
		}
	}
}

func TestGrafanaToPromQL(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{`rate(x[$__rate_interval])`, `rate(x[5m])`},
		{`rate(x[${__interval}])`, `rate(x[5m])`},
		{`x{queue=~"$queue"}`, `x{queue=~"x"}`},
	}
	for _, tc := range tests {
		if got := grafanaToPromQL(tc.in); got != tc.want {
			t.Errorf("grafanaToPromQL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
