package notify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// Destinations is the cluster admin's list of where Notify steps may post.
// A playbook author picks the URL (in a Secret), so without the list a
// playbook could make Riposte post to any address its pod reaches.
type Destinations struct {
	rules []rule
	// literal holds the IP addresses the admin listed by number: the only
	// loopback, link-local or metadata addresses a post may reach.
	literal map[netip.Addr]bool
}

// rule is one entry of the list.
type rule struct {
	scheme string // "https" for a bare host; as written for a URL prefix
	host   string // lower case; "*.example.com" matches its subdomains
	port   string // empty: any port
	path   string // a URL prefix's path; matched on segment boundaries
}

// ParseDestinations reads the admin's list. Each entry is a host
// (hooks.slack.com, allowing HTTPS to it on any port), a wildcard
// (*.example.com, HTTPS to any subdomain), or a URL prefix
// (http://chat.internal:8065/hooks/, that scheme, host, optional port and
// path). An IP address listed by number may be reached even when it is a
// loopback or link-local one.
func ParseDestinations(entries []string) (*Destinations, error) {
	d := &Destinations{literal: map[netip.Addr]bool{}}
	for _, entry := range entries {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		r := rule{scheme: "https"}
		if strings.Contains(entry, "://") {
			u, err := url.Parse(entry)
			if err != nil || u.Hostname() == "" || (u.Scheme != "http" && u.Scheme != "https") || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
				return nil, fmt.Errorf("notification destination %q: want a host, *.domain, or an http(s) URL prefix without credentials, query or fragment", entry)
			}
			r.scheme, r.host, r.port, r.path = u.Scheme, strings.ToLower(u.Hostname()), u.Port(), strings.TrimSuffix(u.EscapedPath(), "/")
		} else {
			host, port, err := net.SplitHostPort(entry)
			if err != nil {
				host, port = entry, ""
			}
			if strings.ContainsAny(host, "/?#@ ") || host == "" || host == "*." {
				return nil, fmt.Errorf("notification destination %q: want a host, *.domain, or an http(s) URL prefix", entry)
			}
			r.host, r.port = strings.ToLower(strings.Trim(host, "[]")), port
		}
		if ip, err := netip.ParseAddr(r.host); err == nil {
			d.literal[ip.Unmap()] = true
		}
		d.rules = append(d.rules, r)
	}
	return d, nil
}

// Check says whether rawURL may be posted to: a permanent *Error naming
// the host when not. The URL itself is never in the error: webhook URLs
// are credentials.
func (d *Destinations) Check(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return &Error{Msg: "the webhook URL is not a valid http(s) URL", Permanent: true}
	}
	host := strings.ToLower(u.Hostname())
	if d != nil {
		for _, r := range d.rules {
			if r.matches(u.Scheme, host, u.Port(), u.EscapedPath()) {
				return nil
			}
		}
	}
	return &Error{Permanent: true, Msg: fmt.Sprintf("host %q (%s) is not an allowed notification destination; "+
		"the cluster admin lists those in --notify-allowed-destinations", host, u.Scheme)}
}

func (r rule) matches(scheme, host, port, path string) bool {
	if scheme != r.scheme || (r.port != "" && port != r.port) {
		return false
	}
	if sub, ok := strings.CutPrefix(r.host, "*."); ok {
		if !strings.HasSuffix(host, "."+sub) {
			return false
		}
	} else if host != r.host {
		return false
	}
	return r.path == "" || path == r.path || strings.HasPrefix(path, r.path+"/")
}

// errAddressRefused is what a post to an address Riposte never reaches on
// a playbook's behalf fails with.
var errAddressRefused = errors.New("refused")

// reachable refuses the addresses that lead into the node or the cloud
// rather than to a chat or ticketing service: loopback, link-local (which
// holds the cloud metadata service, 169.254.169.254), unspecified,
// multicast and the metadata addresses outside that range, unless the
// admin listed the address by number. It is checked on the address
// actually dialled, so a name that resolves there later is refused too.
func (d *Destinations) reachable(address string) error {
	hostport, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("dialling %s: %w", address, err)
	}
	ip := hostport.Addr().Unmap()
	if d != nil && d.literal[ip] {
		return nil
	}
	if ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() ||
		ip.IsMulticast() || ip.IsUnspecified() || metadataAddresses[ip] {
		return fmt.Errorf("address %s is loopback, link-local or a cloud metadata service, which notifications never reach unless listed by number: %w", ip, errAddressRefused)
	}
	return nil
}

var metadataAddresses = map[netip.Addr]bool{
	netip.MustParseAddr("100.100.100.200"): true, // Alibaba Cloud
	netip.MustParseAddr("fd00:ec2::254"):   true, // AWS over IPv6
}

// Client is an HTTP client for posts to these destinations: it follows no
// redirect (a 3xx would lead past the list) and dials no refused address.
func (d *Destinations) Client(timeout time.Duration) *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second, Control: func(_, address string, _ syscall.RawConn) error {
		return d.reachable(address)
	}}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.DialContext = func(ctx context.Context, network, address string) (net.Conn, error) {
		return dialer.DialContext(ctx, network, address)
	}
	return &http.Client{Timeout: timeout, Transport: transport, CheckRedirect: noRedirects}
}

func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
