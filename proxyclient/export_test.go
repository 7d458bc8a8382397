package proxyclient

import "time"

// SetNow replaces the client's clock so HTTP-date Retry-After values can be tested
// without sleeping or depending on the wall clock.
func SetNow(c *Client, now func() time.Time) { c.now = now }
