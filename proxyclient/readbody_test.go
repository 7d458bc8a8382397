package proxyclient

import (
	"bytes"
	"io"
	"testing"
	"testing/iotest"
)

// readBody must return what io.ReadAll(io.LimitReader(r, limit)) returns whatever the
// announced size says, right or wrong.
func TestReadBodyMatchesReadAll(t *testing.T) {
	for _, n := range []int{0, 1, 511, 512, 1000, 4096, 5000} {
		body := bytes.Repeat([]byte("x"), n)
		for _, limit := range []int64{3, 1000, 1 << 20} {
			want, werr := io.ReadAll(io.LimitReader(bytes.NewReader(body), limit))
			for _, size := range []int64{-1, 0, int64(n) - 1, int64(n), int64(n) + 1, limit, limit + 5} {
				for _, r := range []io.Reader{bytes.NewReader(body), iotest.OneByteReader(bytes.NewReader(body)), iotest.DataErrReader(bytes.NewReader(body))} {
					got, err := readBody(r, limit, size)
					if !bytes.Equal(got, want) || (err == nil) != (werr == nil) {
						t.Fatalf("n=%d limit=%d size=%d: got %d bytes, %v; want %d, %v", n, limit, size, len(got), err, len(want), werr)
					}
				}
			}
		}
	}
	_, err := readBody(iotest.TimeoutReader(bytes.NewReader([]byte("ab"))), 10, 2)
	if err == nil {
		t.Fatal("a read error was lost")
	}
}
