package interaction

import (
	stdjson "encoding/json"
	"reflect"
	"testing"
)

// FuzzValueAsEncodingJSON: Value and Parse use segmentio's JSON; the claim compares values byte
// for byte with those earlier versions wrote with encoding/json, so for any queue, task ID and
// account both must write the same bytes, and Parse must read back what encoding/json reads.
func FuzzValueAsEncodingJSON(f *testing.F) {
	for _, s := range [][3]string{
		{"default", "q8Vx0mMkZ3aR-1", "AC00000000000000000000000000000001"},
		{"critical", "order-8812-eta", ""},
		{"a<b>&c", "key \"quoted\" \\ \u2028 \u2029", "\xff\xfe bad utf-8"},
		{"", "\x00\x1f\x7f", "é ü 😀"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, q, id, account string) {
		r := Ref{Queue: q, TaskID: id, AccountSID: account}
		std, err := stdjson.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Value(); got != string(std) {
			t.Fatalf("Value() = %q, encoding/json wrote %q", got, std)
		}
		var want Ref
		if err := stdjson.Unmarshal(std, &want); err != nil {
			t.Fatal(err)
		}
		got, _, err := Parse(string(std))
		if err != nil || !reflect.DeepEqual(*got, want) {
			t.Fatalf("Parse(%q) = %+v, %v; encoding/json read %+v", std, got, err, want)
		}
	})
}
