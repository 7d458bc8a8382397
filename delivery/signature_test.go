package delivery

import (
	"net/url"
	"testing"

	"github.com/proxyq/proxyq/proxyclient/proxytest"
)

// Twilio's published test vector (twilio-go's request validator tests).
func twilioVector() (string, string, url.Values, string) {
	params := url.Values{}
	params.Set("Digits", "1234")
	params.Set("CallSid", "CA1234567890ABCDE")
	params.Set("To", "+18005551212")
	params.Set("Caller", "+14158675309")
	params.Set("From", "+14158675309")
	params.Set("ReasonConferenceEnded", "test")
	params.Set("Reason", "Participant")
	return "12345", "https://mycompany.com/myapp.php?foo=1&bar=2", params, "vOEb5UThFn24KEfnOFLQY2AE5FY="
}

func TestSignatureTwilioVector(t *testing.T) {
	token, u, params, want := twilioVector()
	if got := Signature(token, u, params); got != want {
		t.Fatalf("Signature = %q, want %q", got, want)
	}
	if !ValidSignature(token, u, params, want) {
		t.Fatal("the published vector does not validate")
	}
	// Twilio may have signed the URL with its default port: the SDKs accept both forms.
	if !ValidSignature(token, "https://mycompany.com:443/myapp.php?foo=1&bar=2", params, want) {
		t.Fatal("the vector does not validate when the configured URL carries :443")
	}
	for name, bad := range map[string]func() (string, string, url.Values, string){
		"wrong token": func() (string, string, url.Values, string) { return "12346", u, params, want },
		"query reordered": func() (string, string, url.Values, string) {
			return token, "https://mycompany.com/myapp.php?bar=2&foo=1", params, want
		},
		"query dropped": func() (string, string, url.Values, string) {
			return token, "https://mycompany.com/myapp.php", params, want
		},
		"other host": func() (string, string, url.Values, string) {
			return token, "https://example.com/myapp.php?foo=1&bar=2", params, want
		},
		"http, not https": func() (string, string, url.Values, string) {
			return token, "http://mycompany.com/myapp.php?foo=1&bar=2", params, want
		},
		"non-default port": func() (string, string, url.Values, string) {
			return token, "https://mycompany.com:8443/myapp.php?foo=1&bar=2", params, want
		},
		"empty signature": func() (string, string, url.Values, string) { return token, u, params, "" },
		"param changed": func() (string, string, url.Values, string) {
			p := url.Values{}
			for k, v := range params {
				p[k] = append([]string(nil), v...)
			}
			p.Set("Digits", "1235")
			return token, u, p, want
		},
	} {
		tok, uu, p, sig := bad()
		if ValidSignature(tok, uu, p, sig) {
			t.Errorf("%s: validated", name)
		}
	}
}

func TestSignaturePortsQueriesAndRepeatedParams(t *testing.T) {
	params := url.Values{"interactionSid": {"KI1"}, "MediaUrl": {"https://a/1", "https://a/2"}}
	// Signed by Twilio on the URL with the port written out.
	signed := "https://hooks.example.com:443/v1/twilio/proxy/callbacks?tenant=a%20b&x=1"
	sig := Signature("tok", signed, params)
	for _, configured := range []string{signed, "https://hooks.example.com/v1/twilio/proxy/callbacks?tenant=a%20b&x=1"} {
		if !ValidSignature("tok", configured, params, sig) {
			t.Errorf("%s: not accepted", configured)
		}
	}
	// http and :80 too.
	sig80 := Signature("tok", "http://h.example/cb", params)
	if !ValidSignature("tok", "http://h.example:80/cb", params, sig80) {
		t.Error("http with :80 not accepted")
	}
	// Every value of a repeated parameter is signed (values sorted, as Twilio's helpers do):
	// dropping one fails, the order they arrive in does not matter.
	if ValidSignature("tok", signed, url.Values{"interactionSid": {"KI1"}, "MediaUrl": {"https://a/1"}}, sig) {
		t.Error("a signature over two values validated with one")
	}
	if !ValidSignature("tok", signed, url.Values{"interactionSid": {"KI1"}, "MediaUrl": {"https://a/2", "https://a/1"}}, sig) {
		t.Error("values in another order did not validate")
	}
	// The fake Twilio in proxytest signs independently: the two implementations agree.
	if got := proxytest.CallbackSignature("tok", signed, params); got != sig {
		t.Errorf("proxytest signs %q, delivery %q", got, sig)
	}
	// The form of the signed string: URL, then name+value for every value, names sorted.
	manual := Signature("tok", "https://x/cb", url.Values{"b": {"2"}, "a": {"1", "0"}})
	if manual != hmacSHA1B64("tok", "https://x/cba0a1b2") {
		t.Error("signature is not HMAC-SHA1 over url + sorted name/value pairs")
	}
	// A value repeated under one name: signed with both (Node) or once (Python), both accepted.
	twice := url.Values{"a": {"1", "1"}, "b": {"2"}}
	for _, signedAs := range []string{"https://x/cba1a1b2", "https://x/cba1b2"} {
		if !ValidSignature("tok", "https://x/cb", twice, hmacSHA1B64("tok", signedAs)) {
			t.Errorf("repeated value signed as %q not accepted", signedAs)
		}
	}
	if ValidSignature("tok", "https://x/cb", twice, hmacSHA1B64("tok", "https://x/cbb2")) {
		t.Error("a signature without the repeated name validated")
	}
	if got := CallbackURL("https://p.example/prefix/", "/v1/twilio/proxy/callbacks", "a=1&a=2"); got != "https://p.example/prefix/v1/twilio/proxy/callbacks?a=1&a=2" {
		t.Errorf("CallbackURL = %q", got)
	}
}
