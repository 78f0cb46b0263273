package builtin

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"syscall"
	"time"

	"github.com/agentpg/agentpg/tool"
)

// Defaults of HTTPFetchConfig.
const (
	DefaultFetchTimeout     = 10 * time.Second
	DefaultMaxResponseBytes = 1 << 20
	DefaultMaxRedirects     = 5
)

// maxHeaderBytes bounds the response headers http_fetch accepts.
const maxHeaderBytes = 64 << 10

// Resolver looks up the IP addresses of a host. *net.Resolver implements it.
type Resolver interface {
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

// HTTPFetchConfig configures NewHTTPFetch. The zero value refuses every URL.
type HTTPFetchConfig struct {
	// AllowedHosts lists the hosts that may be fetched: an exact host name
	// or IP address ("api.example.com", "192.0.2.1"), "*.example.com" for
	// every subdomain of example.com (but not example.com itself), or "*"
	// for every host. Empty allows no host at all.
	AllowedHosts []string
	// DeniedHosts uses the same patterns and is checked first: a denied
	// host is refused even if it is also allowed.
	DeniedHosts []string
	// AllowHTTP allows plain http URLs; by default only https is fetched.
	AllowHTTP bool
	// Timeout bounds a whole fetch, redirects and body included. Zero means
	// DefaultFetchTimeout.
	Timeout time.Duration
	// MaxResponseBytes is the largest (decoded) body returned. A larger
	// body is refused with ErrTooLarge, not truncated. Zero means
	// DefaultMaxResponseBytes.
	MaxResponseBytes int64
	// MaxRedirects is the number of redirects followed. Zero means
	// DefaultMaxRedirects; a negative value refuses every redirect.
	MaxRedirects int
	// Resolver looks up host names. Nil means net.DefaultResolver.
	Resolver Resolver
	// TLSConfig is the base TLS configuration, for example to set RootCAs.
	// Its MinVersion is raised to TLS 1.2, and InsecureSkipVerify is
	// refused.
	TLSConfig *tls.Config

	// AllowLoopback lets connections reach loopback addresses (127.0.0.0/8
	// and ::1). DANGEROUS: it exposes every service listening on the
	// agent's own machine to the model. It exists for tests and local
	// development against a server on 127.0.0.1; never set it in
	// production. No such switch exists for private or link-local ranges.
	AllowLoopback bool
}

// HTTPFetch is the http_fetch tool: it GETs an allowed URL and returns the
// status line and body. Every URL, including each redirect target, must have
// an allowed scheme and host and no user information, and every connection is
// checked, on the address actually dialled, to reach only public unicast
// addresses (see ErrAddressNotAllowed). No proxy is used, no cookies are kept
// and no credentials are sent.
type HTTPFetch struct {
	allowed, denied hostPatterns
	allowHTTP       bool
	allowLoopback   bool
	timeout         time.Duration
	maxBytes        int64
	maxRedirects    int
	resolver        Resolver
	dialer          *net.Dialer
	client          *http.Client
}

var (
	_ tool.TimeoutTool    = (*HTTPFetch)(nil)
	_ tool.IdempotentTool = (*HTTPFetch)(nil)
)

// NewHTTPFetch checks cfg and returns the http_fetch tool.
func NewHTTPFetch(cfg HTTPFetchConfig) (*HTTPFetch, error) {
	allowed, err := parseHostPatterns(cfg.AllowedHosts)
	if err != nil {
		return nil, fmt.Errorf("%w: AllowedHosts: %w", ErrInvalidConfig, err)
	}
	denied, err := parseHostPatterns(cfg.DeniedHosts)
	if err != nil {
		return nil, fmt.Errorf("%w: DeniedHosts: %w", ErrInvalidConfig, err)
	}
	if cfg.Timeout < 0 || cfg.MaxResponseBytes < 0 {
		return nil, fmt.Errorf("%w: Timeout and MaxResponseBytes must not be negative", ErrInvalidConfig)
	}
	tlsConfig, err := baseTLSConfig(cfg.TLSConfig)
	if err != nil {
		return nil, err
	}
	f := &HTTPFetch{
		allowed:       allowed,
		denied:        denied,
		allowHTTP:     cfg.AllowHTTP,
		allowLoopback: cfg.AllowLoopback,
		timeout:       cmp.Or(cfg.Timeout, DefaultFetchTimeout),
		maxBytes:      cmp.Or(cfg.MaxResponseBytes, DefaultMaxResponseBytes),
		maxRedirects:  max(cmp.Or(cfg.MaxRedirects, DefaultMaxRedirects), 0),
		resolver:      cfg.Resolver,
	}
	if f.resolver == nil {
		f.resolver = net.DefaultResolver
	}
	f.dialer = &net.Dialer{Timeout: f.timeout, Control: f.control}
	f.client = &http.Client{
		Transport: &http.Transport{
			Proxy:                  nil, // never from the environment
			DialContext:            f.dial,
			TLSClientConfig:        tlsConfig,
			TLSHandshakeTimeout:    f.timeout,
			DisableKeepAlives:      true,
			MaxResponseHeaderBytes: maxHeaderBytes,
		},
		CheckRedirect: f.checkRedirect,
		Timeout:       f.timeout,
	}
	return f, nil
}

func baseTLSConfig(base *tls.Config) (*tls.Config, error) {
	if base == nil {
		return &tls.Config{MinVersion: tls.VersionTLS12}, nil
	}
	if base.InsecureSkipVerify {
		return nil, fmt.Errorf("%w: TLSConfig.InsecureSkipVerify is not allowed", ErrInvalidConfig)
	}
	c := base.Clone()
	c.MinVersion = max(c.MinVersion, tls.VersionTLS12)
	return c, nil
}

// Name returns "http_fetch".
func (f *HTTPFetch) Name() string { return "http_fetch" }

// Description tells the model what the tool does.
func (f *HTTPFetch) Description() string {
	return fmt.Sprintf("Fetches a URL with HTTP GET and returns the status line and the body as text. "+
		"Only %s URLs of allowed hosts are fetched, and bodies over %d bytes are refused. "+
		"Binary bodies are described, not shown, and invalid UTF-8 is shown as U+FFFD, with a note.", f.schemes(), f.maxBytes)
}

// InputSchema describes {"url": string}.
func (f *HTTPFetch) InputSchema() tool.ToolSchema {
	return objectSchema(map[string]tool.PropertyDef{
		"url": {Type: "string", Description: "The absolute URL to fetch."},
	})
}

// Timeout returns the configured fetch timeout.
func (f *HTTPFetch) Timeout() time.Duration { return f.timeout }

// Idempotent reports true: GET requests may be repeated.
func (f *HTTPFetch) Idempotent() bool { return true }

// Execute fetches the URL in input after checking it, and returns the status
// line and the body as text: a binary body is described rather than
// returned, and invalid UTF-8 is replaced with U+FFFD, with a note.
func (f *HTTPFetch) Execute(ctx context.Context, input json.RawMessage) (string, error) {
	return storableResult(f.execute(ctx, input))
}

func (f *HTTPFetch) execute(ctx context.Context, input json.RawMessage) (string, error) {
	var in struct {
		URL string `json:"url"`
	}
	if err := decodeInput(input, &in); err != nil {
		return "", err
	}
	if in.URL == "" {
		return "", fmt.Errorf("%w: url is empty", ErrInvalidInput)
	}
	u, err := url.Parse(in.URL)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalidInput, err)
	}
	if err := f.checkURL(u); err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalidInput, err)
	}
	req.Header.Set("User-Agent", "agentpg-http-fetch")
	resp, err := f.client.Do(req)
	if err != nil {
		return "", err // a *url.Error naming the URL, without any password
	}
	defer resp.Body.Close()
	body, err := f.readBody(resp)
	if err != nil {
		return "", err
	}
	status := makeStorable(resp.Proto + " " + resp.Status) // the server's reason phrase
	return status + "\n\n" + asText(describeBody(resp), body), nil
}

// describeBody names the response body for asText, with its media type if
// the response has a valid one.
func describeBody(resp *http.Response) string {
	mediaType, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil {
		return "the response body"
	}
	return "the response body (" + mediaType + ")" // tokens: printable ASCII
}

func (f *HTTPFetch) readBody(resp *http.Response) ([]byte, error) {
	if resp.ContentLength > f.maxBytes {
		return nil, fmt.Errorf("%w: response body is %d bytes; the limit is %d", ErrTooLarge, resp.ContentLength, f.maxBytes)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, f.maxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading response body: %w", err)
	}
	if int64(len(body)) > f.maxBytes {
		return nil, fmt.Errorf("%w: response body exceeds the limit of %d bytes", ErrTooLarge, f.maxBytes)
	}
	return body, nil
}

// checkURL refuses u unless its scheme is allowed, it has no user
// information, and its host is allowed and, if an IP address, public.
func (f *HTTPFetch) checkURL(u *url.URL) error {
	if u.Scheme != "https" && (u.Scheme != "http" || !f.allowHTTP) {
		return fmt.Errorf("%w: %q (allowed: %s)", ErrSchemeNotAllowed, u.Scheme, f.schemes())
	}
	if u.User != nil {
		return fmt.Errorf("%w: URLs with user information are refused", ErrHostNotAllowed)
	}
	host, err := canonicalHost(u.Hostname())
	if err != nil {
		return fmt.Errorf("%w: %w", ErrHostNotAllowed, err)
	}
	if f.denied.match(host) {
		return fmt.Errorf("%w: %q is denied", ErrHostNotAllowed, host)
	}
	if len(f.allowed) == 0 {
		return fmt.Errorf("%w: no hosts are allowed", ErrHostNotAllowed)
	}
	if !f.allowed.match(host) {
		return fmt.Errorf("%w: %q is not an allowed host", ErrHostNotAllowed, host)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return checkAddr(a, f.allowLoopback)
	}
	return nil
}

func (f *HTTPFetch) schemes() string {
	if f.allowHTTP {
		return "https, http"
	}
	return "https"
}

// checkRedirect applies the redirect limit and checkURL to each redirect.
func (f *HTTPFetch) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > f.maxRedirects {
		return fmt.Errorf("%w: the limit is %d", ErrTooManyRedirects, f.maxRedirects)
	}
	req.Header.Del("Referer") // don't tell the next host where we came from
	return f.checkURL(req.URL)
}

// dial resolves the host itself and refuses it unless every address is
// allowed, so a name cannot mix public and private answers, then dials the
// checked addresses, so nothing is looked up twice.
func (f *HTTPFetch) dial(ctx context.Context, network, address string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	addrs, err := f.resolve(ctx, host)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, a := range addrs {
		conn, err := f.dialer.DialContext(ctx, network, net.JoinHostPort(a.String(), port))
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// resolve returns the addresses of host, or an error if any is refused.
func (f *HTTPFetch) resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a}, checkAddr(a, f.allowLoopback)
	}
	ips, err := f.resolver.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("resolving %q: %w", host, err)
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("resolving %q: no addresses", host)
	}
	addrs := make([]netip.Addr, len(ips))
	for i, ip := range ips {
		a, ok := netip.AddrFromSlice(ip.IP)
		if !ok {
			return nil, fmt.Errorf("resolving %q: invalid address %v", host, ip.IP)
		}
		if err := checkAddr(a, f.allowLoopback); err != nil {
			return nil, fmt.Errorf("%q resolves to a refused address: %w", host, err)
		}
		addrs[i] = a.Unmap()
	}
	return addrs, nil
}

// control runs after a socket is created and before it connects: the last
// check, on the exact address being dialled.
func (f *HTTPFetch) control(network, address string, _ syscall.RawConn) error {
	if network != "tcp4" && network != "tcp6" {
		return fmt.Errorf("%w: network %q", ErrAddressNotAllowed, network)
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrAddressNotAllowed, err)
	}
	return checkAddr(ap.Addr(), f.allowLoopback)
}
