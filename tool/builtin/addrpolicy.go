package builtin

import (
	"fmt"
	"net/netip"
)

// deniedRanges are the special-purpose IANA ranges http_fetch never connects
// to. IPv4-mapped IPv6 addresses are unmapped before they are checked.
var deniedRanges = []struct {
	prefix netip.Prefix
	reason string
}{
	{netip.MustParsePrefix("0.0.0.0/32"), "unspecified"},
	{netip.MustParsePrefix("0.0.0.0/8"), `in the "this network" block`},
	{netip.MustParsePrefix("10.0.0.0/8"), "private"},
	{netip.MustParsePrefix("100.64.0.0/10"), "shared address space (CGNAT)"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local (cloud metadata lives here)"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private"},
	{netip.MustParsePrefix("192.0.0.0/24"), "reserved for IETF protocol assignments"},
	{netip.MustParsePrefix("192.0.2.0/24"), "reserved for documentation"},
	{netip.MustParsePrefix("192.88.99.0/24"), "a 6to4 relay address"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private"},
	{netip.MustParsePrefix("198.18.0.0/15"), "reserved for benchmarking"},
	{netip.MustParsePrefix("198.51.100.0/24"), "reserved for documentation"},
	{netip.MustParsePrefix("203.0.113.0/24"), "reserved for documentation"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved (including broadcast)"},

	{netip.MustParsePrefix("::/128"), "unspecified"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("fc00::/7"), "unique local (private)"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
	{netip.MustParsePrefix("2001::/23"), "reserved for IETF protocol assignments (including Teredo)"},
	{netip.MustParsePrefix("2001:db8::/32"), "reserved for documentation"},
	{netip.MustParsePrefix("2002::/16"), "a 6to4 address"},
	{netip.MustParsePrefix("3fff::/20"), "reserved for documentation"},
}

var (
	// globalUnicast holds every IPv6 unicast address that can be public.
	globalUnicast = netip.MustParsePrefix("2000::/3")
	// nat64 is the well-known NAT64 prefix: its addresses stand for the
	// IPv4 address in their last 32 bits, which is checked instead.
	nat64 = netip.MustParsePrefix("64:ff9b::/96")
)

// checkAddr refuses a that is not public unicast. With allowLoopback, the
// loopback addresses 127.0.0.0/8 and ::1 are let through.
func checkAddr(a netip.Addr, allowLoopback bool) error {
	a = a.WithZone("").Unmap()
	if allowLoopback && a.IsLoopback() {
		return nil
	}
	if reason := deniedReason(a); reason != "" {
		return fmt.Errorf("%w: %s is %s", ErrAddressNotAllowed, a, reason)
	}
	return nil
}

// deniedReason says why a, unmapped and without a zone, is refused, or
// returns "" if it is allowed.
func deniedReason(a netip.Addr) string {
	if !a.IsValid() {
		return "not a valid address"
	}
	for _, r := range deniedRanges {
		if r.prefix.Contains(a) {
			return r.reason
		}
	}
	if nat64.Contains(a) {
		v4 := netip.AddrFrom4([4]byte(a.AsSlice()[12:]))
		if reason := deniedReason(v4); reason != "" {
			return fmt.Sprintf("the NAT64 form of %s, which is %s", v4, reason)
		}
		return ""
	}
	if a.Is6() && !globalUnicast.Contains(a) {
		return "not an IPv6 global unicast address"
	}
	return ""
}
