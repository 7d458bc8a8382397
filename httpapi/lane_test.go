package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"

	"github.com/proxyq/proxyq/tasks"
)

// ordering_key on the single and batch routes: places in input order, the lane in the status,
// a bad key is a 422 naming the field, and a replay with another key is a 409.
func TestOrderingKeyOverHTTP(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	first := decodeInto[Accepted](t, e.do(post("/v1/message-interactions", msgJSON(t, map[string]any{"ordering_key": "rider-7"}), "h-1")))
	var batch []map[string]any
	for i := range 3 {
		batch = append(batch, map[string]any{"service_sid": ks, "session_sid": kc, "participant_sid": kp,
			"body": fmt.Sprint("b", i), "ordering_key": "rider-7", "idempotency_key": fmt.Sprint("h-b", i)})
	}
	raw, err := json.Marshal(map[string]any{"messages": batch})
	if err != nil {
		t.Fatal(err)
	}
	body := string(raw)
	w := e.do(post("/v1/message-interactions:batch", body, ""))
	wantStatus(t, w, http.StatusOK)
	lane, err := e.db.Client(t).ZRange(context.Background(), tasks.LaneKey("default", "rider-7"), 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{first.ID, "h-b0", "h-b1", "h-b2"}; !slices.Equal(lane, want) {
		t.Fatalf("lane = %v, want %v", lane, want)
	}
	st := decodeInto[tasks.Status](t, e.do(req{method: http.MethodGet, path: "/v1/message-interactions/h-b2"}))
	if st.Message.OrderingKey != "rider-7" || st.Lane == nil || st.Lane.Position != 4 || st.Lane.Ahead != 3 || st.Lane.Head != "h-1" || st.Lane.WaitingFor == "" {
		t.Errorf("status lane = %+v", st.Lane)
	}
	p := wantProblem(t, e.do(post("/v1/message-interactions", msgJSON(t, map[string]any{"ordering_key": "a b"}), "")), http.StatusUnprocessableEntity, ProblemValidation)
	if !hasFieldError(p, "ordering_key", "may contain only") {
		t.Errorf("bad key: %+v", p)
	}
	p = wantProblem(t, e.do(post("/v1/message-interactions", msgJSON(t, map[string]any{"ordering_key": "rider-8"}), "h-1")), http.StatusConflict, ProblemKeyConflict)
	if !hasFieldError(p, "ordering_key", "differs") {
		t.Errorf("replay with another key: %+v", p)
	}
	// Cancelling the head hands the lane on at once.
	wantStatus(t, e.do(req{method: http.MethodDelete, path: "/v1/message-interactions/h-1"}), http.StatusOK)
	lane, err = e.db.Client(t).ZRange(context.Background(), tasks.LaneKey("default", "rider-7"), 0, -1).Result()
	if err != nil || !slices.Equal(lane, []string{"h-b0", "h-b1", "h-b2"}) {
		t.Errorf("after cancelling the head, lane = %v, %v", lane, err)
	}
}
