package builtin

import (
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
)

// fakeResolver maps host names to addresses, so tests never use real DNS.
type fakeResolver map[string][]string

func (r fakeResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	addrs, ok := r[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host (fake resolver)", Name: host, IsNotFound: true}
	}
	ips := make([]net.IPAddr, len(addrs))
	for i, a := range addrs {
		ips[i] = net.IPAddr{IP: net.ParseIP(a)}
	}
	return ips, nil
}

var testResolver = fakeResolver{
	"localhost":     {"127.0.0.1", "::1"},
	"example.com":   {"127.0.0.1"}, // a name httptest's certificate is valid for
	"metadata.test": {"169.254.169.254"},
	"internal.test": {"10.0.0.1"},
	"cgnat.test":    {"100.64.0.1"},
	"mapped.test":   {"::ffff:169.254.169.254"},
	"ula.test":      {"fd00::1"},
	"nat64.test":    {"64:ff9b::a00:1"},
	"zero.test":     {"0.0.0.0"},
	"mixed.test":    {"8.8.8.8", "10.0.0.1"},
	"rebind.test":   {"8.8.8.8", "127.0.0.1"},
	"loopmix.test":  {"127.0.0.1", "10.0.0.1"},
}

// newTestFetch returns an HTTPFetch that resolves names with testResolver
// and whose dialer, after its own check, also refuses anything but loopback:
// should the code under test ever let such an address through, the test
// fails and still no packet leaves the machine.
func newTestFetch(t *testing.T, cfg HTTPFetchConfig) *HTTPFetch {
	t.Helper()
	cfg.Resolver = testResolver
	f, err := NewHTTPFetch(cfg)
	if err != nil {
		t.Fatal(err)
	}
	check := f.dialer.Control
	f.dialer.Control = func(network, address string, c syscall.RawConn) error {
		if err := check(network, address, c); err != nil {
			return err
		}
		if ap, err := netip.ParseAddrPort(address); err != nil || !ap.Addr().IsLoopback() {
			t.Errorf("dial to %s was allowed; the test guard blocked it", address)
			return errors.New("test guard: tests may only connect to loopback")
		}
		return nil
	}
	return f
}

func fetch(f *HTTPFetch, rawURL string) (string, error) {
	input, _ := json.Marshal(map[string]string{"url": rawURL})
	return f.Execute(context.Background(), input)
}

// countingServer is a loopback test server that counts its requests.
type countingServer struct {
	*httptest.Server
	hits atomic.Int32
}

func newCountingServer(t *testing.T, useTLS bool, h http.HandlerFunc) *countingServer {
	t.Helper()
	s := &countingServer{}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		h(w, r)
	})
	if useTLS {
		s.Server = httptest.NewTLSServer(handler)
	} else {
		s.Server = httptest.NewServer(handler)
	}
	t.Cleanup(s.Close)
	return s
}

func (s *countingServer) port() string {
	return s.Listener.Addr().(*net.TCPAddr).AddrPort().String()[len("127.0.0.1:"):]
}

func (s *countingServer) certPool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(s.Certificate())
	return pool
}

// httpEnv holds the servers of one corpus case: target, which every refused
// request would reach if it got through, and origin and tlsOrigin, which
// redirect to where they are told and serve oversized bodies.
type httpEnv struct {
	target, origin, tlsOrigin *countingServer
}

func newHTTPEnv(t *testing.T) *httpEnv {
	target := newCountingServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "target reached")
	})
	originHandler := func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/redirect":
			http.Redirect(w, r, r.URL.Query().Get("to"), http.StatusFound)
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		case "/big":
			fmt.Fprint(w, strings.Repeat("x", 2048))
		case "/chunked":
			for range 4 {
				fmt.Fprint(w, strings.Repeat("x", 512))
				w.(http.Flusher).Flush()
			}
		case "/gzip":
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			zw.Write(make([]byte, 10<<20))
			zw.Close()
		}
	}
	return &httpEnv{
		target:    target,
		origin:    newCountingServer(t, false, originHandler),
		tlsOrigin: newCountingServer(t, true, originHandler),
	}
}

// fetchConfigs are the configurations the corpus runs against.
var fetchConfigs = map[string]func(env *httpEnv) HTTPFetchConfig{
	// Every host, so only the address checks stand in the way.
	"any": func(*httpEnv) HTTPFetchConfig {
		return HTTPFetchConfig{AllowedHosts: []string{"*"}, AllowHTTP: true}
	},
	"list": func(*httpEnv) HTTPFetchConfig {
		return HTTPFetchConfig{
			AllowedHosts: []string{"allowed.test", "*.example.test"},
			DeniedHosts:  []string{"bad.example.test"},
		}
	},
	"zero": func(*httpEnv) HTTPFetchConfig { return HTTPFetchConfig{} },
	// Follows redirects from the loopback origin.
	"redirect": func(*httpEnv) HTTPFetchConfig {
		return HTTPFetchConfig{
			AllowedHosts:     []string{"127.0.0.1", "169.254.169.254", "*.test"},
			DeniedHosts:      []string{"denied.test"},
			AllowHTTP:        true,
			AllowLoopback:    true,
			MaxRedirects:     3,
			MaxResponseBytes: 1024,
		}
	},
	"no-redirects": func(*httpEnv) HTTPFetchConfig {
		return HTTPFetchConfig{AllowedHosts: []string{"127.0.0.1"}, AllowHTTP: true, AllowLoopback: true, MaxRedirects: -1}
	},
	"https-only": func(env *httpEnv) HTTPFetchConfig {
		return HTTPFetchConfig{
			AllowedHosts:  []string{"127.0.0.1"},
			AllowLoopback: true,
			TLSConfig:     &tls.Config{RootCAs: env.tlsOrigin.certPool()},
		}
	},
}

// fetchCorpus holds hostile URLs. TPORT stands for the target server's
// port. With originPath, the URL fetched is that path on the origin server,
// which redirects to redirectTo; originHits is how many requests the origin
// then serves. The target must never be reached.
var fetchCorpus = []struct {
	config     string
	url        string
	originPath string
	redirectTo string
	want       error
	msg        string
	originHits int32
}{
	// IPv4 loopback in every notation.
	{config: "any", url: "http://127.0.0.1:TPORT/", want: ErrAddressNotAllowed, msg: "127.0.0.1 is loopback"},
	{config: "any", url: "http://127.1:TPORT/", want: ErrHostNotAllowed, msg: "non-standard notation"},
	{config: "any", url: "http://2130706433:TPORT/", want: ErrHostNotAllowed, msg: "non-standard notation"},
	{config: "any", url: "http://0177.0.0.1:TPORT/", want: ErrHostNotAllowed, msg: "non-standard notation"},
	{config: "any", url: "http://0x7f.1:TPORT/", want: ErrHostNotAllowed, msg: "non-standard notation"},
	{config: "any", url: "http://0x7f000001:TPORT/", want: ErrHostNotAllowed, msg: "non-standard notation"},
	{config: "any", url: "http://0X7F.0.0.1:TPORT/", want: ErrHostNotAllowed, msg: "non-standard notation"},
	{config: "any", url: "http://017700000001:TPORT/", want: ErrHostNotAllowed, msg: "non-standard notation"},
	{config: "any", url: "http://127.000.000.001:TPORT/", want: ErrHostNotAllowed, msg: "non-standard notation"},
	{config: "any", url: "http://127.0.0.1.:TPORT/", want: ErrAddressNotAllowed, msg: "127.0.0.1 is loopback"},
	{config: "any", url: "http://127.0.0.2:TPORT/", want: ErrAddressNotAllowed, msg: "loopback"},
	// IPv6 loopback and IPv4-mapped or -compatible forms.
	{config: "any", url: "http://[::1]:TPORT/", want: ErrAddressNotAllowed, msg: "::1 is loopback"},
	{config: "any", url: "http://[0:0:0:0:0:0:0:1]:TPORT/", want: ErrAddressNotAllowed, msg: "::1 is loopback"},
	{config: "any", url: "http://[::ffff:127.0.0.1]:TPORT/", want: ErrAddressNotAllowed, msg: "127.0.0.1 is loopback"},
	{config: "any", url: "http://[::ffff:7f00:1]:TPORT/", want: ErrAddressNotAllowed, msg: "127.0.0.1 is loopback"},
	{config: "any", url: "http://[0:0:0:0:0:ffff:127.0.0.1]:TPORT/", want: ErrAddressNotAllowed, msg: "127.0.0.1 is loopback"},
	{config: "any", url: "http://[::127.0.0.1]:TPORT/", want: ErrAddressNotAllowed, msg: "not an IPv6 global unicast address"},
	// Cloud metadata and link-local.
	{config: "any", url: "http://169.254.169.254/latest/meta-data/", want: ErrAddressNotAllowed, msg: "link-local"},
	{config: "any", url: "http://[0:0:0:0:0:ffff:169.254.169.254]/", want: ErrAddressNotAllowed, msg: "169.254.169.254 is link-local"},
	{config: "any", url: "http://[::ffff:a9fe:a9fe]/", want: ErrAddressNotAllowed, msg: "169.254.169.254 is link-local"},
	{config: "any", url: "http://[fd00:ec2::254]/", want: ErrAddressNotAllowed, msg: "unique local"},
	{config: "any", url: "http://[fe80::1]/", want: ErrAddressNotAllowed, msg: "link-local"},
	{config: "any", url: "http://[fe80::1%25eth0]/", want: ErrAddressNotAllowed, msg: "link-local"},
	{config: "any", url: "http://0xa9fea9fe/", want: ErrHostNotAllowed, msg: "non-standard notation"},
	// Private, shared and special-purpose ranges.
	{config: "any", url: "http://10.0.0.1/", want: ErrAddressNotAllowed, msg: "10.0.0.1 is private"},
	{config: "any", url: "http://10.255.255.255/", want: ErrAddressNotAllowed, msg: "private"},
	{config: "any", url: "http://172.16.0.1/", want: ErrAddressNotAllowed, msg: "private"},
	{config: "any", url: "http://172.31.255.254/", want: ErrAddressNotAllowed, msg: "private"},
	{config: "any", url: "http://192.168.1.1/", want: ErrAddressNotAllowed, msg: "private"},
	{config: "any", url: "http://[::ffff:10.0.0.1]/", want: ErrAddressNotAllowed, msg: "10.0.0.1 is private"},
	{config: "any", url: "http://100.64.0.1/", want: ErrAddressNotAllowed, msg: "CGNAT"},
	{config: "any", url: "http://100.127.255.254/", want: ErrAddressNotAllowed, msg: "CGNAT"},
	{config: "any", url: "http://0.0.0.0:TPORT/", want: ErrAddressNotAllowed, msg: "0.0.0.0 is unspecified"},
	{config: "any", url: "http://0.1.2.3/", want: ErrAddressNotAllowed, msg: "this network"},
	{config: "any", url: "http://[::]:TPORT/", want: ErrAddressNotAllowed, msg: ":: is unspecified"},
	{config: "any", url: "http://[fc00::1]/", want: ErrAddressNotAllowed, msg: "unique local"},
	{config: "any", url: "http://224.0.0.1/", want: ErrAddressNotAllowed, msg: "multicast"},
	{config: "any", url: "http://239.255.255.250/", want: ErrAddressNotAllowed, msg: "multicast"},
	{config: "any", url: "http://[ff02::1]/", want: ErrAddressNotAllowed, msg: "multicast"},
	{config: "any", url: "http://255.255.255.255/", want: ErrAddressNotAllowed, msg: "broadcast"},
	{config: "any", url: "http://240.0.0.1/", want: ErrAddressNotAllowed, msg: "reserved"},
	{config: "any", url: "http://192.0.0.1/", want: ErrAddressNotAllowed, msg: "IETF"},
	{config: "any", url: "http://192.0.2.1/", want: ErrAddressNotAllowed, msg: "documentation"},
	{config: "any", url: "http://198.18.0.1/", want: ErrAddressNotAllowed, msg: "benchmarking"},
	{config: "any", url: "http://198.51.100.7/", want: ErrAddressNotAllowed, msg: "documentation"},
	{config: "any", url: "http://203.0.113.9/", want: ErrAddressNotAllowed, msg: "documentation"},
	{config: "any", url: "http://[2001:db8::1]/", want: ErrAddressNotAllowed, msg: "documentation"},
	{config: "any", url: "http://[64:ff9b::a9fe:a9fe]/", want: ErrAddressNotAllowed, msg: "NAT64 form of 169.254.169.254"},
	{config: "any", url: "http://[2002:7f00:1::]/", want: ErrAddressNotAllowed, msg: "6to4"},
	{config: "any", url: "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", want: ErrAddressNotAllowed, msg: "Teredo"},
	{config: "any", url: "http://[fec0::1]/", want: ErrAddressNotAllowed, msg: "not an IPv6 global unicast address"},
	// Names resolving to refused addresses: refused before connecting.
	{config: "any", url: "http://localhost:TPORT/", want: ErrAddressNotAllowed, msg: "127.0.0.1 is loopback"},
	{config: "any", url: "http://metadata.test/", want: ErrAddressNotAllowed, msg: "169.254.169.254 is link-local"},
	{config: "any", url: "http://internal.test/", want: ErrAddressNotAllowed, msg: "10.0.0.1 is private"},
	{config: "any", url: "http://cgnat.test/", want: ErrAddressNotAllowed, msg: "CGNAT"},
	{config: "any", url: "http://mapped.test/", want: ErrAddressNotAllowed, msg: "169.254.169.254 is link-local"},
	{config: "any", url: "http://ula.test/", want: ErrAddressNotAllowed, msg: "unique local"},
	{config: "any", url: "http://nat64.test/", want: ErrAddressNotAllowed, msg: "NAT64 form of 10.0.0.1"},
	{config: "any", url: "http://zero.test:TPORT/", want: ErrAddressNotAllowed, msg: "unspecified"},
	{config: "any", url: "http://mixed.test/", want: ErrAddressNotAllowed, msg: "10.0.0.1 is private"},
	{config: "any", url: "http://rebind.test:TPORT/", want: ErrAddressNotAllowed, msg: "127.0.0.1 is loopback"},
	// Host allow and deny lists.
	{config: "zero", url: "https://allowed.test/", want: ErrHostNotAllowed, msg: "no hosts are allowed"},
	{config: "zero", url: "http://8.8.8.8/", want: ErrSchemeNotAllowed, msg: `"http" (allowed: https)`},
	{config: "zero", url: "https://8.8.8.8/", want: ErrHostNotAllowed, msg: "no hosts are allowed"},
	{config: "list", url: "https://evil.test/", want: ErrHostNotAllowed, msg: `"evil.test" is not an allowed host`},
	{config: "list", url: "https://bad.example.test/", want: ErrHostNotAllowed, msg: `"bad.example.test" is denied`},
	{config: "list", url: "https://BAD.Example.TEST/", want: ErrHostNotAllowed, msg: `"bad.example.test" is denied`},
	{config: "list", url: "https://bad.example.test./", want: ErrHostNotAllowed, msg: `"bad.example.test" is denied`},
	{config: "list", url: "https://example.test/", want: ErrHostNotAllowed, msg: "not an allowed host"},
	{config: "list", url: "https://allowed.test.evil.test/", want: ErrHostNotAllowed, msg: "not an allowed host"},
	{config: "list", url: "https://evilallowed.test/", want: ErrHostNotAllowed, msg: "not an allowed host"},
	{config: "list", url: "https://evilexample.test/", want: ErrHostNotAllowed, msg: "not an allowed host"},
	{config: "list", url: "https://allowed.test../", want: ErrHostNotAllowed, msg: "not a valid host name"},
	{config: "list", url: "https://ａｌｌｏｗｅｄ.test/", want: ErrHostNotAllowed, msg: "not a valid host name"},
	{config: "list", url: "https://allowed.test:443@evil.test/", want: ErrHostNotAllowed, msg: "user information"},
	// User information and parser confusion.
	{config: "list", url: "https://allowed.test@evil.test/", want: ErrHostNotAllowed, msg: "user information"},
	{config: "list", url: "https://user:hunter2@allowed.test/", want: ErrHostNotAllowed, msg: "user information"},
	{config: "list", url: "https://evil.test#@allowed.test/", want: ErrHostNotAllowed, msg: `"evil.test" is not an allowed host`},
	{config: "list", url: "https://evil.test?@allowed.test/", want: ErrHostNotAllowed, msg: `"evil.test" is not an allowed host`},
	{config: "list", url: "https://allowed.test%40evil.test/", want: ErrInvalidInput, msg: "invalid URL escape"},
	{config: "list", url: "https://allowed.test%2eevil.test/", want: ErrInvalidInput, msg: "invalid URL escape"},
	{config: "list", url: `https://allowed.test\@evil.test/`, want: ErrInvalidInput, msg: "invalid"},
	{config: "list", url: "https:///allowed.test/", want: ErrHostNotAllowed, msg: "host is empty"},
	{config: "list", url: "https:allowed.test", want: ErrHostNotAllowed, msg: "host is empty"},
	{config: "list", url: "", want: ErrInvalidInput, msg: "url is empty"},
	// Schemes.
	{config: "list", url: "http://allowed.test/", want: ErrSchemeNotAllowed, msg: `"http" (allowed: https)`},
	{config: "list", url: "//allowed.test/", want: ErrSchemeNotAllowed, msg: `""`},
	{config: "list", url: "allowed.test/index.html", want: ErrSchemeNotAllowed, msg: `""`},
	{config: "list", url: "file:///etc/passwd", want: ErrSchemeNotAllowed, msg: `"file"`},
	{config: "list", url: "gopher://allowed.test:70/_GET", want: ErrSchemeNotAllowed, msg: `"gopher"`},
	{config: "list", url: "javascript:alert(1)", want: ErrSchemeNotAllowed, msg: `"javascript"`},
	{config: "list", url: "data:text/plain,hello", want: ErrSchemeNotAllowed, msg: `"data"`},
	{config: "list", url: "ftp://allowed.test/", want: ErrSchemeNotAllowed, msg: `"ftp"`},
	{config: "list", url: "ws://allowed.test/", want: ErrSchemeNotAllowed, msg: `"ws"`},
	{config: "any", url: "dict://127.0.0.1:TPORT/", want: ErrSchemeNotAllowed, msg: `"dict"`},
	// Redirects: each hop is checked like the first URL.
	{config: "redirect", originPath: "/redirect", redirectTo: "http://169.254.169.254/latest/meta-data/", want: ErrAddressNotAllowed, msg: "169.254.169.254 is link-local", originHits: 1},
	{config: "redirect", originPath: "/redirect", redirectTo: "http://metadata.test/latest/meta-data/", want: ErrAddressNotAllowed, msg: "169.254.169.254 is link-local", originHits: 1},
	{config: "redirect", originPath: "/redirect", redirectTo: "http://internal.test:TPORT/", want: ErrAddressNotAllowed, msg: "10.0.0.1 is private", originHits: 1},
	{config: "redirect", originPath: "/redirect", redirectTo: "http://loopmix.test:TPORT/", want: ErrAddressNotAllowed, msg: "10.0.0.1 is private", originHits: 1},
	{config: "redirect", originPath: "/redirect", redirectTo: "http://[::ffff:10.0.0.1]:TPORT/", want: ErrHostNotAllowed, msg: "not an allowed host", originHits: 1},
	{config: "redirect", originPath: "/redirect", redirectTo: "http://evil.example:TPORT/", want: ErrHostNotAllowed, msg: `"evil.example" is not an allowed host`, originHits: 1},
	{config: "redirect", originPath: "/redirect", redirectTo: "http://denied.test:TPORT/", want: ErrHostNotAllowed, msg: `"denied.test" is denied`, originHits: 1},
	{config: "redirect", originPath: "/redirect", redirectTo: "http://user@127.0.0.1:TPORT/", want: ErrHostNotAllowed, msg: "user information", originHits: 1},
	{config: "redirect", originPath: "/redirect", redirectTo: "http://127.1:TPORT/", want: ErrHostNotAllowed, msg: "non-standard notation", originHits: 1},
	{config: "redirect", originPath: "/redirect", redirectTo: "file:///etc/passwd", want: ErrSchemeNotAllowed, msg: `"file"`, originHits: 1},
	{config: "redirect", originPath: "/redirect", redirectTo: "gopher://127.0.0.1:TPORT/", want: ErrSchemeNotAllowed, msg: `"gopher"`, originHits: 1},
	{config: "redirect", originPath: "/loop", want: ErrTooManyRedirects, msg: "the limit is 3", originHits: 4},
	{config: "no-redirects", originPath: "/redirect", redirectTo: "http://127.0.0.1:TPORT/", want: ErrTooManyRedirects, msg: "the limit is 0", originHits: 1},
	{config: "https-only", originPath: "/redirect", redirectTo: "http://127.0.0.1:TPORT/", want: ErrSchemeNotAllowed, msg: `"http" (allowed: https)`, originHits: 1},
	// Oversized bodies.
	{config: "redirect", originPath: "/big", want: ErrTooLarge, msg: "response body is 2048 bytes; the limit is 1024", originHits: 1},
	{config: "redirect", originPath: "/chunked", want: ErrTooLarge, msg: "exceeds the limit of 1024 bytes", originHits: 1},
	{config: "redirect", originPath: "/gzip", want: ErrTooLarge, msg: "exceeds the limit of 1024 bytes", originHits: 1},
}

func TestHTTPFetchCorpus(t *testing.T) {
	t.Parallel()
	for _, c := range fetchCorpus {
		t.Run(c.config+" "+c.url+c.originPath+" "+c.redirectTo, func(t *testing.T) {
			t.Parallel()
			env := newHTTPEnv(t)
			f := newTestFetch(t, fetchConfigs[c.config](env))
			expand := func(s string) string { return strings.ReplaceAll(s, "TPORT", env.target.port()) }
			rawURL := expand(c.url)
			if c.originPath != "" {
				origin := env.origin
				if c.config == "https-only" {
					origin = env.tlsOrigin
				}
				rawURL = origin.URL + c.originPath + "?to=" + url.QueryEscape(expand(c.redirectTo))
			}
			out, err := fetch(f, rawURL)
			checkRefused(t, out, err, c.want, c.msg)
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error %q reveals a password", err)
			}
			if n := env.target.hits.Load(); n != 0 {
				t.Errorf("target server was reached %d times", n)
			}
			if n := env.origin.hits.Load() + env.tlsOrigin.hits.Load(); n != c.originHits {
				t.Errorf("origin served %d requests, want %d", n, c.originHits)
			}
		})
	}
}

func TestHTTPFetchTLS(t *testing.T) {
	t.Parallel()
	srv := newCountingServer(t, true, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "hello over TLS")
	})
	f := newTestFetch(t, HTTPFetchConfig{
		AllowedHosts:  []string{"example.com"},
		AllowLoopback: true,
		TLSConfig:     &tls.Config{RootCAs: srv.certPool()},
	})
	out, err := fetch(f, "https://example.com:"+srv.port()+"/")
	if want := "HTTP/1.1 200 OK\n\nhello over TLS"; err != nil || out != want {
		t.Errorf("fetch = %q, %v; want %q", out, err, want)
	}
}

func TestHTTPFetchFollowsAllowedRedirect(t *testing.T) {
	t.Parallel()
	env := newHTTPEnv(t)
	var referer atomic.Value
	target := newCountingServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		referer.Store(r.Header.Get("Referer"))
		fmt.Fprint(w, "landed")
	})
	f := newTestFetch(t, fetchConfigs["redirect"](env))
	out, err := fetch(f, env.origin.URL+"/redirect?to="+url.QueryEscape(target.URL+"/landing"))
	if want := "HTTP/1.1 200 OK\n\nlanded"; err != nil || out != want {
		t.Errorf("fetch = %q, %v; want %q", out, err, want)
	}
	if r := referer.Load(); r != "" {
		t.Errorf("redirect target got Referer %q", r)
	}
}

func TestHTTPFetchReturnsErrorStatuses(t *testing.T) {
	t.Parallel()
	srv := newCountingServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		http.NotFound(w, r)
	})
	f := newTestFetch(t, HTTPFetchConfig{AllowedHosts: []string{"localhost"}, AllowHTTP: true, AllowLoopback: true})
	out, err := fetch(f, "http://localhost:"+srv.port()+"/missing")
	if want := "HTTP/1.1 404 Not Found\n\n404 page not found\n"; err != nil || out != want {
		t.Errorf("fetch = %q, %v; want %q", out, err, want)
	}
}

func TestHTTPFetchDialerRefusesBeforeConnect(t *testing.T) {
	t.Parallel()
	f := newTestFetch(t, HTTPFetchConfig{AllowedHosts: []string{"*"}})
	for _, addr := range []string{"10.0.0.1:80", "169.254.169.254:80", "[::1]:80", "[::ffff:127.0.0.1]:80"} {
		conn, err := f.dialer.DialContext(context.Background(), "tcp", addr)
		if !errors.Is(err, ErrAddressNotAllowed) {
			t.Errorf("dial %s: %v, want ErrAddressNotAllowed", addr, err)
		}
		if conn != nil {
			conn.Close()
		}
	}
	if err := f.control("udp4", "8.8.8.8:53", nil); !errors.Is(err, ErrAddressNotAllowed) {
		t.Errorf("control(udp4) = %v, want ErrAddressNotAllowed", err)
	}
}

func TestHTTPFetchInvalidInput(t *testing.T) {
	t.Parallel()
	f := newTestFetch(t, HTTPFetchConfig{AllowedHosts: []string{"*"}})
	for _, input := range []string{`not json`, `{"url":"https://a.test/","method":"POST"}`, `{"url":1}`, `{}`} {
		out, err := f.Execute(context.Background(), json.RawMessage(input))
		checkRefused(t, out, err, ErrInvalidInput, "")
	}
}

func TestCheckAddrAllowsPublicUnicast(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "2a00:1450:4001::200e", "64:ff9b::808:808"} {
		if err := checkAddr(netip.MustParseAddr(s), false); err != nil {
			t.Errorf("checkAddr(%s) = %v", s, err)
		}
	}
	for _, s := range []string{"127.0.0.1", "127.255.0.1", "::1", "::ffff:127.0.0.1"} {
		if err := checkAddr(netip.MustParseAddr(s), true); err != nil {
			t.Errorf("checkAddr(%s, allowLoopback) = %v", s, err)
		}
	}
	for _, s := range []string{"10.0.0.1", "169.254.169.254", "2002:7f00:1::", "64:ff9b::7f00:1"} {
		if err := checkAddr(netip.MustParseAddr(s), true); !errors.Is(err, ErrAddressNotAllowed) {
			t.Errorf("checkAddr(%s, allowLoopback) = %v, want ErrAddressNotAllowed", s, err)
		}
	}
}

func TestNewHTTPFetchConfig(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		cfg HTTPFetchConfig
		msg string
	}{
		{HTTPFetchConfig{AllowedHosts: []string{""}}, "host is empty"},
		{HTTPFetchConfig{AllowedHosts: []string{"*."}}, "host is empty"},
		{HTTPFetchConfig{AllowedHosts: []string{"exa mple.com"}}, "not a valid host name"},
		{HTTPFetchConfig{AllowedHosts: []string{"*.*.example.com"}}, "not a valid host name"},
		{HTTPFetchConfig{AllowedHosts: []string{"https://example.com"}}, "not a valid host name"},
		{HTTPFetchConfig{AllowedHosts: []string{"*.127.0.0.1"}}, "wildcard"},
		{HTTPFetchConfig{DeniedHosts: []string{"0x7f.1"}}, "non-standard notation"},
		{HTTPFetchConfig{Timeout: -1}, "negative"},
		{HTTPFetchConfig{MaxResponseBytes: -1}, "negative"},
		{HTTPFetchConfig{TLSConfig: &tls.Config{InsecureSkipVerify: true}}, "InsecureSkipVerify"},
	} {
		f, err := NewHTTPFetch(c.cfg)
		if f != nil || !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("NewHTTPFetch(%+v) = %v, %v; want an error mentioning %q", c.cfg, f, err, c.msg)
		}
	}
}

func TestNewHTTPFetchRaisesTLSMinVersion(t *testing.T) {
	t.Parallel()
	f, err := NewHTTPFetch(HTTPFetchConfig{TLSConfig: &tls.Config{MinVersion: tls.VersionTLS10}})
	if err != nil {
		t.Fatal(err)
	}
	tr := f.client.Transport.(*http.Transport)
	if v := tr.TLSClientConfig.MinVersion; v != tls.VersionTLS12 {
		t.Errorf("MinVersion = %x, want TLS 1.2", v)
	}
	if tr.Proxy != nil {
		t.Error("the transport uses a proxy")
	}
}

func TestHTTPFetchBinaryAndInvalidUTF8Bodies(t *testing.T) {
	t.Parallel()
	png := "\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x00\x00\x01"
	srv := newCountingServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/image":
			w.Header().Set("Content-Type", "image/png")
			fmt.Fprint(w, png)
		case "/latin1":
			w.Header().Set("Content-Type", "text/plain; charset=iso-8859-1")
			fmt.Fprint(w, "caf\xe9\n")
		case "/unlabelled":
			w.Header()["Content-Type"] = nil // no sniffing either
			fmt.Fprint(w, "\x00\xff")
		}
	})
	f := newTestFetch(t, HTTPFetchConfig{AllowedHosts: []string{"127.0.0.1"}, AllowHTTP: true, AllowLoopback: true})
	for path, want := range map[string]string{
		"/image":      fmt.Sprintf("HTTP/1.1 200 OK\n\n[the response body (image/png) is binary data of %d bytes; its content is not shown]", len(png)),
		"/latin1":     "HTTP/1.1 200 OK\n\n[the response body (text/plain) is not valid UTF-8: each invalid byte sequence is shown as U+FFFD (\uFFFD)]\ncaf\uFFFD\n",
		"/unlabelled": "HTTP/1.1 200 OK\n\n[the response body is binary data of 2 bytes; its content is not shown]",
	} {
		out, err := fetch(f, srv.URL+path)
		checkStorable(t, "fetch "+path, out)
		if err != nil || out != want {
			t.Errorf("fetch %s = %q, %v; want %q", path, out, err, want)
		}
	}
}

func TestHTTPFetchInvalidUTF8StatusLine(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	mustDo(t, err)
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 4096)
			conn.Read(buf) // the request, ignored
			fmt.Fprint(conn, "HTTP/1.1 200 O\xffK\x00\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
			conn.Close()
		}
	}()
	f := newTestFetch(t, HTTPFetchConfig{AllowedHosts: []string{"127.0.0.1"}, AllowHTTP: true, AllowLoopback: true})
	out, err := fetch(f, "http://"+l.Addr().String()+"/")
	checkStorable(t, "fetch output", out)
	if err != nil {
		checkStorable(t, "fetch error", err.Error())
	} else if want := "HTTP/1.1 200 O\uFFFDK\uFFFD\n\nok"; out != want {
		t.Errorf("fetch = %q; want %q", out, want)
	}
}
