package interaction

import "testing"

// Every value the key can hold reads back as what it says: nothing, callbacks waiting, a claim
// whose record may be missing, a recorded message, one with callbacks still to apply, and an
// entry of the earlier layout with its Message SID.
func TestParse(t *testing.T) {
	ref := Ref{Queue: "default", TaskID: "t-1", AccountSID: "AC1"}
	v := ref.Value()
	if v != `{"q":"default","id":"t-1","a":"AC1"}` {
		t.Fatalf("Value() = %s", v)
	}
	tests := []struct {
		value   string
		want    *Ref
		pending bool
	}{
		{Waiting, nil, true},
		{Waiting + v, &ref, true},
		{v, &ref, false},
		{`{"q":"default","id":"t-1","a":"AC1","e":1}`, &ref, false},
		{`{"q":"default","id":"t-1","a":"AC1","m":"SM1"}`, &Ref{Queue: "default", TaskID: "t-1", AccountSID: "AC1", MessageSID: "SM1"}, false},
	}
	for _, tt := range tests {
		got, pending, err := Parse(tt.value)
		if err != nil || pending != tt.pending || (got == nil) != (tt.want == nil) || (got != nil && *got != *tt.want) {
			t.Errorf("Parse(%q) = %+v, %v, %v; want %+v, %v", tt.value, got, pending, err, tt.want, tt.pending)
		}
	}
	if _, _, err := Parse("not json"); err == nil {
		t.Error("Parse of a value that is no message: want an error")
	}
	if (Ref{Queue: "q", TaskID: "t", MessageSID: "SM1"}).Value() != `{"q":"q","id":"t"}` {
		t.Error("Value writes the Message SID, which only earlier entries held")
	}
}
