//! The error of the plugin host: which plugin, and which rule or step.

use std::fmt;

use inlet_core::SourceError;

/// A sandbox rule a plugin broke.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rule {
    /// A call used more CPU time than its limit.
    CpuLimit {
        /// The limit per call, milliseconds (`sandbox.max_call_ms`).
        millis: u64,
    },
    /// The instance tried to grow its memory past the limit.
    MemoryLimit {
        /// The limit in bytes.
        bytes: u64,
    },
    /// A request to a host the manifest does not declare.
    HostNotDeclared {
        /// The host asked for.
        host: String,
    },
    /// A request to a declared host the operator does not allow.
    HostNotAllowed {
        /// The host asked for.
        host: String,
    },
    /// A host that resolves to a private, loopback or link-local address.
    PrivateAddress {
        /// The host asked for.
        host: String,
        /// The address it resolved to.
        address: String,
    },
    /// A URL scheme other than https (or http where allowed).
    Scheme {
        /// The URL asked for.
        url: String,
    },
    /// A response larger than the limit.
    ResponseTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// A secret the connection does not define.
    UnknownSecret {
        /// Its name.
        name: String,
    },
    /// The component imports something the host does not offer: anything but the inlet
    /// host interface and the locked-down WASI 0.2 set (`wasi:http`, a newer WASI...).
    ForbiddenImport {
        /// The import.
        import: String,
    },
    /// The plugin tried to open a file or directory (WASI plugins: every path is refused).
    Filesystem {
        /// The path asked for.
        path: String,
    },
    /// The plugin tried to create a socket (WASI plugins; HTTP goes through the host).
    Socket {
        /// `tcp` or `udp`.
        kind: String,
    },
    /// The plugin tried to resolve a host name itself (WASI plugins).
    NameLookup {
        /// The name asked for.
        name: String,
    },
    /// The plugin wrote more to stdout and stderr than the limit.
    OutputLimit {
        /// The limit in bytes, per instance.
        bytes: u64,
    },
}

impl Rule {
    /// A short name for the rule, stable for scripts and tests.
    pub fn name(&self) -> &'static str {
        match self {
            Rule::CpuLimit { .. } => "cpu-limit",
            Rule::MemoryLimit { .. } => "memory-limit",
            Rule::HostNotDeclared { .. } => "host-not-declared",
            Rule::HostNotAllowed { .. } => "host-not-allowed",
            Rule::PrivateAddress { .. } => "private-address",
            Rule::Scheme { .. } => "scheme",
            Rule::ResponseTooLarge { .. } => "response-too-large",
            Rule::UnknownSecret { .. } => "unknown-secret",
            Rule::ForbiddenImport { .. } => "forbidden-import",
            Rule::Filesystem { .. } => "filesystem",
            Rule::Socket { .. } => "socket",
            Rule::NameLookup { .. } => "name-lookup",
            Rule::OutputLimit { .. } => "output-limit",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::CpuLimit { millis } => write!(
                f,
                "cpu-limit: a call used more than {millis} ms of CPU time (raise sandbox.max_call_ms if the plugin is legitimately busy)"
            ),
            Rule::MemoryLimit { bytes } => write!(
                f,
                "memory-limit: the plugin tried to use more than {} MiB (sandbox.memory_mb)",
                bytes / (1024 * 1024)
            ),
            Rule::HostNotDeclared { host } => write!(
                f,
                "host-not-declared: `{host}` is not among the hosts in the plugin's manifest"
            ),
            Rule::HostNotAllowed { host } => write!(
                f,
                "host-not-allowed: `{host}` is not in the connection's sandbox.allow_hosts"
            ),
            Rule::PrivateAddress { host, address } => write!(
                f,
                "private-address: `{host}` resolves to {address}, a private, loopback or link-local address (allow it explicitly with sandbox.allow_private)"
            ),
            Rule::Scheme { url } => write!(
                f,
                "scheme: `{url}` is not https (plain http needs sandbox.allow_http = true)"
            ),
            Rule::ResponseTooLarge { limit } => write!(
                f,
                "response-too-large: a response exceeded {limit} bytes (sandbox.max_response_bytes)"
            ),
            Rule::UnknownSecret { name } => write!(
                f,
                "unknown-secret: the plugin asked for secret `{name}`, which sandbox.secrets does not define"
            ),
            Rule::ForbiddenImport { import } => write!(
                f,
                "forbidden-import: the component imports `{import}`; plugins may import only inlet:plugin/host and the WASI 0.2 interfaces of a libc (cli, clocks, random, io, filesystem, sockets), which the host locks down"
            ),
            Rule::Filesystem { path } => write!(
                f,
                "filesystem: the plugin tried to open `{path}`; plugins have no files (import every module at the top of the plugin, keep data in memory or in the state)"
            ),
            Rule::Socket { kind } => write!(
                f,
                "socket: the plugin tried to open a {kind} socket; plugins reach the network only through the host's HTTP (inlet_pdk.http), to the hosts its manifest declares"
            ),
            Rule::NameLookup { name } => write!(
                f,
                "name-lookup: the plugin tried to resolve `{name}` itself; plugins reach the network only through the host's HTTP (inlet_pdk.http)"
            ),
            Rule::OutputLimit { bytes } => write!(
                f,
                "output-limit: the plugin wrote more than {bytes} bytes to stdout and stderr (log less, or through inlet_pdk.log)"
            ),
        }
    }
}

/// An error of the plugin host. Every variant names the plugin.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WasmError {
    /// The plugin package cannot be loaded (manifest, file, compilation).
    #[error("plugin `{plugin}`: {message}")]
    Load {
        /// The plugin.
        plugin: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// The plugin broke a sandbox rule; the call was stopped.
    #[error("plugin `{plugin}` broke sandbox rule {rule}")]
    Violation {
        /// The plugin.
        plugin: String,
        /// The rule.
        rule: Rule,
    },
    /// The plugin trapped (a panic, an invalid operation).
    #[error("plugin `{plugin}` crashed in `{call}`: {message}")]
    Trap {
        /// The plugin.
        plugin: String,
        /// The export called.
        call: String,
        /// The trap.
        message: String,
    },
}

impl WasmError {
    /// The rule broken, if this is a violation.
    pub fn rule(&self) -> Option<&Rule> {
        match self {
            WasmError::Violation { rule, .. } => Some(rule),
            _ => None,
        }
    }
}

impl From<WasmError> for SourceError {
    fn from(e: WasmError) -> Self {
        match &e {
            WasmError::Load { plugin, .. } => SourceError::config(format!("plugin {plugin}"), e),
            _ => SourceError::other(e),
        }
    }
}
