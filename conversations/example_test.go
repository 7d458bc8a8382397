package conversations_test

import (
	"fmt"

	"github.com/proxyq/proxyq/conversations"
)

// The producer's attributes keep their values; proxyq's stamp is added and always wins.
func ExampleStampAttributes() {
	attrs, err := conversations.StampAttributes(`{"order":"A-17","proxyq":"forged"}`, "01JD6Z3Q")
	if err != nil {
		panic(err)
	}
	fmt.Println(attrs)
	id, ok := conversations.StampID(attrs)
	fmt.Println(id, ok)
	// Output:
	// {"order":"A-17","proxyq":{"id":"01JD6Z3Q"}}
	// 01JD6Z3Q true
}
