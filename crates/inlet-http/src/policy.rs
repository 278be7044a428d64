//! Which hosts and addresses a client may connect to.

use std::{
    fmt::Debug,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::Arc,
};

/// Decides, before any connection is made, whether a destination is allowed.
///
/// Contract: [`HostPolicy::check_host`] is called with the URL's host (a name or an IP
/// literal) before every request; [`HostPolicy::check_addr`] is called with every address
/// DNS returns for a name, and only allowed addresses are connected to. A policy MUST be
/// cheap and MUST NOT block.
pub trait HostPolicy: Send + Sync + Debug {
    /// Whether requests to `host` may be sent; `Err` says why not.
    fn check_host(&self, host: &str) -> Result<(), String>;
    /// Whether `host` may be reached at `addr` (after DNS resolution, or an IP literal).
    fn check_addr(&self, host: &str, addr: IpAddr) -> Result<(), String>;
}

/// A host allow-list and a deny of private, loopback and link-local ranges (the policy a
/// plugin host uses; built-in connectors run without one).
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    /// Hosts allowed (exact names, or `*.example.com`); empty allows every host.
    pub allow_hosts: Vec<String>,
    /// Refuse loopback, private (RFC 1918, fc00::/7), link-local, unspecified, CGNAT and
    /// multicast addresses.
    pub deny_private: bool,
}

impl AddressPolicy {
    fn host_allowed(&self, host: &str) -> bool {
        if self.allow_hosts.is_empty() {
            return true;
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.allow_hosts.iter().any(|pattern| {
            let pattern = pattern.to_ascii_lowercase();
            match pattern.strip_prefix("*.") {
                Some(suffix) => host.ends_with(&format!(".{suffix}")),
                None => host == pattern,
            }
        })
    }
}

/// Whether `addr` is private, loopback, link-local or otherwise not on the public internet
/// (cloud metadata at 169.254.169.254 is link-local; NAT64 can reach anything). The one
/// definition: [`AddressPolicy`] and the plugin sandbox both use it.
pub fn is_private(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private_v4(v4);
            }
            let seg = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00 // unique local
                || (seg[0] & 0xffc0) == 0xfe80 // link-local
                || (seg[0] == 0x64 && seg[1] == 0xff9b) // NAT64
                || (seg[0] == 0x2001 && seg[1] == 0xdb8) // documentation
        }
    }
}

fn is_private_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10 CGNAT
        || (o[0] == 192 && o[1] == 0 && o[2] == 0)
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking
        || o[0] >= 240
}

impl HostPolicy for AddressPolicy {
    fn check_host(&self, host: &str) -> Result<(), String> {
        if !self.host_allowed(host) {
            return Err(format!(
                "host `{host}` is not in the allow-list ({})",
                self.allow_hosts.join(", ")
            ));
        }
        if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
            return self.check_addr(host, ip);
        }
        Ok(())
    }

    fn check_addr(&self, host: &str, addr: IpAddr) -> Result<(), String> {
        if self.deny_private && is_private(addr) {
            return Err(format!(
                "`{host}` resolves to {addr}, a private, loopback or link-local address"
            ));
        }
        Ok(())
    }
}

/// A DNS resolver that drops addresses the policy refuses (so a public name that resolves
/// to 127.0.0.1 is refused after resolution, not only by name).
#[derive(Debug)]
pub(crate) struct PolicyResolver {
    pub policy: Arc<dyn HostPolicy>,
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| match policy.check_addr(&host, a.ip()) {
                    Ok(()) => true,
                    Err(why) => {
                        refused = Some(why);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let why = refused.unwrap_or_else(|| format!("`{host}` has no address"));
                return Err(Box::new(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!("refused by the host policy: {why}"),
                ))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_loopback_and_link_local_ranges_are_refused() {
        let p = AddressPolicy {
            allow_hosts: vec!["api.github.com".into(), "*.stripe.com".into()],
            deny_private: true,
        };
        assert!(p.check_host("api.github.com").is_ok());
        assert!(p.check_host("api.stripe.com").is_ok());
        assert!(p.check_host("evil.example").is_err());
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "169.254.169.254",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "100.64.0.1",
            "0.0.0.0",
        ] {
            let ip: IpAddr = bad.parse().unwrap();
            assert!(p.check_addr("api.github.com", ip).is_err(), "{bad}");
        }
        assert!(
            p.check_addr("api.github.com", "140.82.112.6".parse().unwrap())
                .is_ok()
        );
    }
}
