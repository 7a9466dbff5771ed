// auditproxy: proxy auto-configuration (PAC) for the department's managed browsers.
// Publish it on an intranet web server as application/x-ns-proxy-autoconfig and point
// browsers at it by policy (GPO/Intune "Proxy settings", Chrome ProxyPacUrl, Firefox
// Proxy.AutoConfigURL). Replace the example names below with yours.
//
// No DIRECT fallback: when the proxy is unreachable, browsing the internet stops rather
// than silently bypassing the audit. That is the usual requirement for a monitored egress
// point. For availability, list a second proxy instead:
//   return "PROXY proxy1.example.gc.ca:8080; PROXY proxy2.example.gc.ca:8080";
// (Appending "; DIRECT" would make browsers go around the proxy whenever it is down.)
//
// Kerberos single sign-on: browsers ask for a ticket to HTTP/<the name given here>, so
// name the proxy (or its load balancer) by the DNS name of its service principal, an A
// record; never an IP address or a short name (deploy/kerberos/README.md, section 3).

var PROXY = "PROXY proxy.example.gc.ca:8080";

// Names that never go through the proxy: the intranet (which has its own logs) and local
// names. A suffix matches the name itself and its subdomains.
var DIRECT_SUFFIXES = ["example.gc.ca", "internal", "local", "localhost"];

// Private, loopback and link-local addresses, typed as IP literals.
var DIRECT_NETWORKS = [
    ["10.0.0.0", "255.0.0.0"],
    ["172.16.0.0", "255.240.0.0"],
    ["192.168.0.0", "255.255.0.0"],
    ["127.0.0.0", "255.0.0.0"],
    ["169.254.0.0", "255.255.0.0"]
];

function FindProxyForURL(url, host) {
    host = host.toLowerCase();
    if (isPlainHostName(host)) {
        return "DIRECT";
    }
    for (var i = 0; i < DIRECT_SUFFIXES.length; i++) {
        var suffix = DIRECT_SUFFIXES[i];
        if (host === suffix || dnsDomainIs(host, "." + suffix)) {
            return "DIRECT";
        }
    }
    // isInNet only for IP literals: on a name it would resolve it, which is slow and
    // sends every host name to DNS before the proxy sees the request.
    if (/^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)) {
        for (var j = 0; j < DIRECT_NETWORKS.length; j++) {
            if (isInNet(host, DIRECT_NETWORKS[j][0], DIRECT_NETWORKS[j][1])) {
                return "DIRECT";
            }
        }
    }
    if (host === "::1" || host === "[::1]") {
        return "DIRECT";
    }
    return PROXY;
}
