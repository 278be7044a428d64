//! The operator's side of the sandbox: limits, allowed hosts, private ranges, secrets.
//!
//! A plugin connection's `config` table may hold a `sandbox` table, read by the host and
//! never shown to the plugin:
//!
//! ```toml
//! [connections.hn.config.sandbox]
//! allow_hosts = ["hacker-news.firebaseio.com"]  # AND the manifest must declare them
//! allow_private = []            # CIDRs a host may resolve to despite being private
//! allow_http = false            # plain http:// (tests, replay servers)
//! memory_mb = 64                # per instance
//! max_call_ms = 30_000          # CPU time one call may use
//! max_response_bytes = 16_777_216
//! timeout_secs = 30             # per HTTP request
//! max_retries = 3               # after a 5xx, 408 or network error (backoff with jitter)
//! max_rate_limit_wait_secs = 300  # longest Retry-After / rate-limit reset waited for
//! max_requests_per_second = 10  # per host, for every instance of the connection
//! secrets = { token = "${env:HN_TOKEN}" }  # handed to the plugin only as names
//! # Send requests for a declared origin elsewhere (a recorded API, a proxy):
//! redirect = { "https://hacker-news.firebaseio.com" = "http://127.0.0.1:8080" }
//! ```

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr, ToSocketAddrs},
    str::FromStr,
};

use serde::Deserialize;

use crate::Rule;

/// The `sandbox` table of a plugin connection.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxConfig {
    /// Hosts the operator allows (exact names); a request needs the manifest to declare
    /// the host too.
    #[serde(default)]
    pub allow_hosts: Vec<String>,
    /// Address ranges (CIDR, or single addresses) a host may resolve to although they are
    /// private, loopback or link-local.
    #[serde(default)]
    pub allow_private: Vec<String>,
    /// Allow plain `http://` URLs.
    #[serde(default)]
    pub allow_http: bool,
    /// Memory of one instance, MiB.
    #[serde(default = "default_memory_mb")]
    pub memory_mb: u64,
    /// CPU time one call into the plugin may use, milliseconds (the CPU time of the thread
    /// running it, so waiting on host HTTP requests is not counted; checked every 10 ms
    /// by an epoch deadline).
    #[serde(default = "default_call_ms")]
    pub max_call_ms: u64,
    /// Largest HTTP response body, bytes.
    #[serde(default = "default_response")]
    pub max_response_bytes: u64,
    /// Timeout of one HTTP request, seconds.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Retries of a request after a 5xx, 408 or network error.
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// Longest wait a `Retry-After` or a rate-limit reset may impose on one request.
    #[serde(default = "default_rate_limit_wait")]
    pub max_rate_limit_wait_secs: u64,
    /// Requests per second per host (none: only the server's limits).
    #[serde(default)]
    pub max_requests_per_second: Option<f64>,
    /// No longer used (the CPU limit was wasmtime fuel; it is `max_call_ms` now): read so
    /// that older configs load, with a warning.
    #[serde(default, skip_serializing)]
    pub fuel_per_call: Option<u64>,
    /// Secrets by the name the plugin uses: a literal, `${env:NAME}` or `${file:PATH}`.
    #[serde(default)]
    pub secrets: BTreeMap<String, inlet_core::secret::SecretValue>,
    /// Origin (`scheme://host[:port]`) to origin: where requests for a declared origin
    /// really go. The declared host is checked, then the target's addresses.
    #[serde(default)]
    pub redirect: BTreeMap<String, String>,
}

fn default_memory_mb() -> u64 {
    64
}
fn default_call_ms() -> u64 {
    30_000
}
fn default_response() -> u64 {
    16 * 1024 * 1024
}
fn default_timeout() -> u64 {
    30
}
fn default_retries() -> u32 {
    3
}
fn default_rate_limit_wait() -> u64 {
    300
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            allow_hosts: Vec::new(),
            allow_private: Vec::new(),
            allow_http: false,
            memory_mb: default_memory_mb(),
            max_call_ms: default_call_ms(),
            max_response_bytes: default_response(),
            timeout_secs: default_timeout(),
            max_retries: default_retries(),
            max_rate_limit_wait_secs: default_rate_limit_wait(),
            max_requests_per_second: None,
            fuel_per_call: None,
            secrets: BTreeMap::new(),
            redirect: BTreeMap::new(),
        }
    }
}

impl SandboxConfig {
    /// Parse and check the `sandbox` table (`None`: the defaults, no network). Errors
    /// name the field as `sandbox.<field>`.
    pub fn from_value(value: Option<&serde_json::Value>) -> Result<Self, inlet_core::SourceError> {
        let Some(v) = value else {
            return Ok(SandboxConfig::default());
        };
        let c: SandboxConfig = serde_json::from_value(v.clone()).map_err(|e| {
            let msg = e.to_string();
            let field = msg.split('`').nth(1).unwrap_or("").to_string();
            inlet_core::SourceError::config(format!("sandbox.{field}"), msg)
        })?;
        for (i, r) in c.allow_private.iter().enumerate() {
            Cidr::parse(r).map_err(|m| {
                inlet_core::SourceError::config(format!("sandbox.allow_private[{i}]"), m)
            })?;
        }
        for (from, to) in &c.redirect {
            Origin::parse(from).map_err(|m| {
                inlet_core::SourceError::config(format!("sandbox.redirect.\"{from}\""), m)
            })?;
            Origin::parse(to).map_err(|m| {
                inlet_core::SourceError::config(format!("sandbox.redirect.\"{from}\""), m)
            })?;
        }
        if c.memory_mb == 0 || c.memory_mb > 4096 {
            return Err(inlet_core::SourceError::config(
                "sandbox.memory_mb",
                "must be between 1 and 4096",
            ));
        }
        if c.max_requests_per_second
            .is_some_and(|r| !(0.001..=100_000.0).contains(&r))
        {
            return Err(inlet_core::SourceError::config(
                "sandbox.max_requests_per_second",
                "must be between 0.001 and 100000",
            ));
        }
        if c.fuel_per_call.is_some() {
            tracing::warn!(
                "sandbox.fuel_per_call is no longer used: the CPU limit of a call is sandbox.max_call_ms"
            );
        }
        if c.max_call_ms < 10 {
            return Err(inlet_core::SourceError::config(
                "sandbox.max_call_ms",
                "must be at least 10 (the deadline is checked every 10 ms)",
            ));
        }
        Ok(c)
    }
}

/// An address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `10.0.0.0/8`, `::1/128`, or a single address.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr = IpAddr::from_str(a.trim())
            .map_err(|_| format!("`{s}` is not an address or CIDR range"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}`: prefix must be 0..={max}"))?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Whether an address is private, loopback, link-local or otherwise not on the public
/// internet: inlet-http's definition, shared with every other client.
pub use inlet_http::is_private;

/// `scheme://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `http` or `https`.
    pub scheme: String,
    /// Lowercase host, IPv6 without brackets.
    pub host: String,
    /// The port, the scheme's default when absent.
    pub port: u16,
}

impl Origin {
    /// Parse an origin (no path).
    pub fn parse(s: &str) -> Result<Self, String> {
        let uri: hyper::Uri = s.parse().map_err(|_| format!("`{s}` is not a URL"))?;
        let t = Target::from_uri(&uri).map_err(|_| format!("`{s}` is not an http(s) origin"))?;
        if uri.path() != "/" && !uri.path().is_empty() {
            return Err(format!("`{s}`: an origin has no path"));
        }
        Ok(t.origin)
    }
}

/// Where a request goes.
#[derive(Debug, Clone)]
pub struct Target {
    /// The origin the plugin asked for.
    pub origin: Origin,
    /// Path and query.
    pub path: String,
}

impl Target {
    fn from_uri(uri: &hyper::Uri) -> Result<Self, ()> {
        let scheme = uri.scheme_str().ok_or(())?.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return Err(()),
        };
        let host = uri
            .host()
            .ok_or(())?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if host.is_empty() {
            return Err(());
        }
        Ok(Target {
            origin: Origin {
                scheme,
                host,
                port: uri.port_u16().unwrap_or(default_port),
            },
            path: uri
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "/".to_string()),
        })
    }
}

/// Addresses already resolved, by (host, port).
pub type Resolved = BTreeMap<(String, u16), Vec<SocketAddr>>;

/// A request the policy allowed: where to connect and what to ask for.
#[derive(Debug, Clone)]
pub struct Allowed {
    /// The origin connected to (after a redirect).
    pub origin: Origin,
    /// The checked address to connect to.
    pub addr: SocketAddr,
    /// Path and query.
    pub path: String,
}

impl Allowed {
    /// The URL to send: the target origin (after a redirect) and the path.
    pub fn url(&self) -> String {
        let host = if self.origin.host.contains(':') {
            format!("[{}]", self.origin.host)
        } else {
            self.origin.host.clone()
        };
        format!(
            "{}://{host}:{}{}",
            self.origin.scheme, self.origin.port, self.path
        )
    }
}

/// The network policy of one plugin connection: manifest hosts AND operator hosts, no
/// private addresses unless allowed, checked on resolved addresses.
#[derive(Debug, Clone)]
pub struct Network {
    declared: Vec<String>,
    allowed: Vec<String>,
    private_ok: Vec<Cidr>,
    allow_http: bool,
    redirect: Vec<(Origin, Origin)>,
}

impl Network {
    /// The policy for a plugin declaring `declared` under `sandbox`.
    pub fn new(declared: &[String], sandbox: &SandboxConfig) -> Self {
        let lower = |v: &[String]| v.iter().map(|h| h.to_ascii_lowercase()).collect::<Vec<_>>();
        Network {
            declared: lower(declared),
            allowed: lower(&sandbox.allow_hosts),
            private_ok: sandbox
                .allow_private
                .iter()
                .filter_map(|c| Cidr::parse(c).ok())
                .collect(),
            allow_http: sandbox.allow_http,
            redirect: sandbox
                .redirect
                .iter()
                .filter_map(|(a, b)| Some((Origin::parse(a).ok()?, Origin::parse(b).ok()?)))
                .collect(),
        }
    }

    fn address_allowed(&self, ip: IpAddr) -> bool {
        !is_private(ip) || self.private_ok.iter().any(|c| c.contains(ip))
    }

    /// Check a URL, resolve its host and check every address. The rule broken, if any.
    pub fn authorize(&self, url: &str) -> Result<Allowed, Rule> {
        self.authorize_with(url, &mut Resolved::new())
    }

    /// [`Network::authorize`], resolving each origin once per `resolved` (the requests of
    /// one `http-fetch-many` call share it).
    pub fn authorize_with(&self, url: &str, resolved: &mut Resolved) -> Result<Allowed, Rule> {
        let scheme_rule = || Rule::Scheme {
            url: url.to_string(),
        };
        let uri: hyper::Uri = url.parse().map_err(|_| scheme_rule())?;
        let target = Target::from_uri(&uri).map_err(|_| scheme_rule())?;
        let host = target.origin.host.clone();
        if !self.declared.contains(&host) {
            return Err(Rule::HostNotDeclared { host });
        }
        if !self.allowed.contains(&host) {
            return Err(Rule::HostNotAllowed { host });
        }
        let origin = self
            .redirect
            .iter()
            .find(|(from, _)| *from == target.origin)
            .map(|(_, to)| to.clone())
            .unwrap_or(target.origin);
        if origin.scheme != "https" && !self.allow_http {
            return Err(scheme_rule());
        }
        let addrs: Vec<SocketAddr> = resolved
            .entry((origin.host.clone(), origin.port))
            .or_insert_with(|| match origin.host.parse::<IpAddr>() {
                Ok(ip) => vec![SocketAddr::new(ip, origin.port)],
                Err(_) => (origin.host.as_str(), origin.port)
                    .to_socket_addrs()
                    .map(|a| a.collect())
                    .unwrap_or_default(),
            })
            .clone();
        // Every address must pass: a name resolving to one public and one private
        // address is refused (the connection could land on either).
        for a in &addrs {
            if !self.address_allowed(a.ip()) {
                return Err(Rule::PrivateAddress {
                    host,
                    address: a.ip().to_string(),
                });
            }
        }
        match addrs.first() {
            Some(addr) => Ok(Allowed {
                origin,
                addr: *addr,
                path: target.path,
            }),
            // Not a rule: a name that does not resolve is a transient network failure,
            // reported as such by the caller.
            None => Ok(Allowed {
                origin,
                addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                path: target.path,
            }),
        }
    }
}

/// The same policy, as inlet-http checks it on the URL it sends (after `authorize`
/// rewrote it) and on every address it connects to.
impl inlet_http::HostPolicy for Network {
    fn check_host(&self, host: &str) -> Result<(), String> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let host = host.to_ascii_lowercase();
        // IP literals compare as addresses (`::1` and `0:0::1` are one host).
        let same = |a: &str| match (a.parse::<IpAddr>(), host.parse::<IpAddr>()) {
            (Ok(x), Ok(y)) => x == y,
            _ => a == host,
        };
        let target = self.redirect.iter().any(|(_, to)| same(&to.host));
        let declared = self.declared.contains(&host) && self.allowed.contains(&host);
        if !target && !declared {
            return Err(format!("`{host}` is not a declared and allowed host"));
        }
        match host.parse::<IpAddr>() {
            Ok(ip) => inlet_http::HostPolicy::check_addr(self, &host, ip),
            Err(_) => Ok(()),
        }
    }

    fn check_addr(&self, host: &str, addr: IpAddr) -> Result<(), String> {
        if self.address_allowed(addr) {
            Ok(())
        } else {
            Err(format!(
                "`{host}` resolves to {addr}, a private, loopback or link-local address"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn net(declared: &[&str], allowed: &[&str], private: &[&str]) -> Network {
        let sandbox = SandboxConfig {
            allow_hosts: allowed.iter().map(|s| s.to_string()).collect(),
            allow_private: private.iter().map(|s| s.to_string()).collect(),
            allow_http: true,
            ..SandboxConfig::default()
        };
        Network::new(
            &declared.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            &sandbox,
        )
    }

    #[test]
    fn a_host_needs_the_manifest_and_the_operator() {
        let n = net(&["a.example"], &["b.example"], &[]);
        assert_eq!(
            n.authorize("https://b.example/x").unwrap_err().name(),
            "host-not-declared"
        );
        assert_eq!(
            n.authorize("https://a.example/x").unwrap_err().name(),
            "host-not-allowed"
        );
    }

    #[test]
    fn private_ranges_are_refused_after_resolution_unless_allowed() {
        let n = net(
            &["localhost", "169.254.169.254", "10.1.2.3"],
            &["localhost", "169.254.169.254", "10.1.2.3"],
            &[],
        );
        for url in [
            "http://localhost:9/",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.1.2.3/",
        ] {
            assert_eq!(
                n.authorize(url).unwrap_err().name(),
                "private-address",
                "{url}"
            );
        }
        let n = net(&["localhost"], &["localhost"], &["127.0.0.0/8", "::1"]);
        assert_eq!(
            n.authorize("http://localhost:9/a?b=1").unwrap().path,
            "/a?b=1"
        );
    }

    #[test]
    fn private_address_table() {
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["1.1.1.1", "151.101.1.140", "2606:4700::1111"] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
        assert!(
            Cidr::parse("10.0.0.0/8")
                .unwrap()
                .contains("10.9.9.9".parse().unwrap())
        );
        assert!(
            !Cidr::parse("10.0.0.0/8")
                .unwrap()
                .contains("11.0.0.1".parse().unwrap())
        );
        assert!(Cidr::parse("10.0.0.0/33").is_err());
    }

    #[test]
    fn redirect_checks_the_declared_host_then_the_target_address() {
        let sandbox = SandboxConfig {
            allow_hosts: vec!["api.example".into()],
            allow_private: vec!["127.0.0.1".into()],
            allow_http: true,
            redirect: [(
                "https://api.example".to_string(),
                "http://127.0.0.1:4000".to_string(),
            )]
            .into_iter()
            .collect(),
            ..SandboxConfig::default()
        };
        let n = Network::new(&["api.example".to_string()], &sandbox);
        let a = n.authorize("https://api.example/v0/x.json").unwrap();
        assert_eq!(a.addr, "127.0.0.1:4000".parse().unwrap());
        assert_eq!(a.path, "/v0/x.json");
        let https_only = Network::new(
            &["api.example".to_string()],
            &SandboxConfig {
                allow_http: false,
                ..sandbox
            },
        );
        assert_eq!(
            https_only
                .authorize("https://api.example/")
                .unwrap_err()
                .name(),
            "scheme"
        );
    }

    #[test]
    fn sandbox_errors_name_the_field() {
        let e =
            SandboxConfig::from_value(Some(&serde_json::json!({"allow_host": []}))).unwrap_err();
        assert!(e.to_string().contains("sandbox.allow_host"), "{e}");
        let e = SandboxConfig::from_value(Some(&serde_json::json!({"allow_private": ["nope"]})))
            .unwrap_err();
        assert!(e.to_string().contains("sandbox.allow_private[0]"), "{e}");
    }
}
