//! WASI 0.2 for plugins that need a libc (a Python component made by `componentize-py`
//! imports the whole `wasi:cli/imports` world: CPython wants clocks, random numbers, stdio
//! and a filesystem API), locked down so that it gives such a plugin nothing a plugin
//! without WASI lacks:
//!
//! - **files**: one preopened directory, `/`, backed by an empty directory that nobody
//!   writes; opening anything under it (`open("/etc/passwd")`, `os.listdir("/")`), or
//!   creating, removing, renaming or linking a path, breaks [`Rule::Filesystem`]. Looking
//!   a path up (`stat`) finds nothing, and the module folders of a componentize-py
//!   component (`/python`, `/bundled`...) answer "no such file", so an import that was
//!   not captured when the component was built fails as a plain `ImportError`.
//! - **environment and arguments**: empty; no initial working directory.
//! - **sockets and name lookups**: creating a TCP or UDP socket breaks [`Rule::Socket`],
//!   resolving a name breaks [`Rule::NameLookup`]. HTTP goes through `inlet:plugin/host`,
//!   with its allow-list, address checks, retries and limits.
//! - **stdout and stderr**: each line becomes a log line of the plugin (redacted, as
//!   `host.log`); past [`OUTPUT_LIMIT`] bytes per instance the plugin breaks
//!   [`Rule::OutputLimit`]. stdin is closed.
//! - **clocks and random**: allowed (the host's wall and monotonic clocks, a CSPRNG).
//!
//! Any other import (`wasi:http`, `wasi:keyvalue`, a newer WASI) is refused at load with
//! its name ([`allowed_import`]).

use std::{
    io,
    path::{Path, PathBuf},
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime::component::{Linker, Val};
use wasmtime_wasi::{
    FsPerms, WasiCtx, WasiCtxBuilder,
    cli::{IsTerminal, StdoutStream},
    p2::{OutputStream, Pollable, StreamError, StreamResult},
};

use crate::{LogSink, Rule, host::HostState, net::PluginNet};

/// Bytes a plugin instance may write to stdout and stderr together.
pub const OUTPUT_LIMIT: usize = 1 << 20;

/// Longest log line made of output; the rest of a longer line is dropped (and counted).
const LINE_LIMIT: usize = 4096;

/// The WASI version whose interfaces the host links (wasmtime-wasi 48); components built
/// against any 0.2.x up to it link by semver.
const LINKED: &str = "0.2.12";

/// The WASI interfaces a plugin may import (package/interface, version 0.2.x).
const ALLOWED: &[&str] = &[
    "cli/environment",
    "cli/exit",
    "cli/stdin",
    "cli/stdout",
    "cli/stderr",
    "cli/terminal-input",
    "cli/terminal-output",
    "cli/terminal-stdin",
    "cli/terminal-stdout",
    "cli/terminal-stderr",
    "clocks/monotonic-clock",
    "clocks/wall-clock",
    "filesystem/types",
    "filesystem/preopens",
    "io/error",
    "io/poll",
    "io/streams",
    "random/random",
    "random/insecure",
    "random/insecure-seed",
    "sockets/network",
    "sockets/instance-network",
    "sockets/tcp",
    "sockets/udp",
    "sockets/tcp-create-socket",
    "sockets/udp-create-socket",
    "sockets/ip-name-lookup",
];

/// Whether `import` (`wasi:cli/stdout@0.2.0`) is a WASI interface the host offers.
pub(crate) fn allowed_import(import: &str) -> bool {
    let Some(rest) = import.strip_prefix("wasi:") else {
        return false;
    };
    let Some((name, version)) = rest.split_once('@') else {
        return false;
    };
    let Some(patch) = version.strip_prefix("0.2.") else {
        return false;
    };
    let linked: u32 = LINKED
        .rsplit('.')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let patch_ok = patch.parse::<u32>().is_ok_and(|p| p <= linked);
    patch_ok && ALLOWED.contains(&name)
}

/// Whether a path (relative to `/`) lies in one of the module folders componentize-py puts
/// on a component's `sys.path` (`/python`, `/world`, `/bundled`, `/0`, `/1`...). Those
/// hold nothing at run time (the modules were captured when the component was built).
fn module_root(rel: &str) -> bool {
    let first = rel.split('/').next().unwrap_or("");
    matches!(first, "python" | "world" | "bundled")
        || (!first.is_empty() && first.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether `import` is a WASI interface (allowed or not).
pub(crate) fn is_wasi(import: &str) -> bool {
    import.starts_with("wasi:")
}

/// Add WASI to `linker`, with the calls that would reach outside the sandbox replaced by
/// ones that stop the plugin with a violation.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    linker.allow_shadowing(true);
    let v = LINKED;
    linker
        .instance(&format!("wasi:sockets/tcp-create-socket@{v}"))?
        .func_new("create-tcp-socket", |mut store, _, _, _| {
            Err(store
                .data_mut()
                .violate(Rule::Socket { kind: "tcp".into() }))
        })?;
    linker
        .instance(&format!("wasi:sockets/udp-create-socket@{v}"))?
        .func_new("create-udp-socket", |mut store, _, _, _| {
            Err(store
                .data_mut()
                .violate(Rule::Socket { kind: "udp".into() }))
        })?;
    linker
        .instance(&format!("wasi:sockets/ip-name-lookup@{v}"))?
        .func_new("resolve-addresses", |mut store, _, params, _| {
            let name = match params.get(1) {
                Some(Val::String(s)) => s.to_string(),
                _ => "?".to_string(),
            };
            Err(store.data_mut().violate(Rule::NameLookup { name }))
        })?;
    // Every descriptor a plugin holds comes from the one preopen, `/`, so every path it
    // opens is `/` + the relative path asked for.
    linker
        .instance(&format!("wasi:filesystem/types@{v}"))?
        .func_new(
            "[method]descriptor.open-at",
            |mut store, _, params, results| {
                let rel = match params.get(2) {
                    Some(Val::String(s)) => s.trim_start_matches("./").to_string(),
                    _ => String::new(),
                };
                if module_root(&rel) {
                    // CPython's import system listing a module folder of the component
                    // (a module that was not imported when it was built): not there, so the
                    // import fails as an ImportError, as without a filesystem.
                    if let Some(r) = results.get_mut(0) {
                        *r = Val::Result(Err(Some(Box::new(Val::Enum("no-entry".into())))));
                    }
                    // A host function given a borrow must end it before it returns.
                    if let Some(Val::Resource(dir)) = params.first() {
                        dir.resource_drop(&mut store)?;
                    }
                    return Ok(());
                }
                let path = if rel.is_empty() || rel == "." {
                    "/".to_string()
                } else {
                    format!("/{rel}")
                };
                Err(store.data_mut().violate(Rule::Filesystem { path }))
            },
        )?;
    // Changing the tree (the preopen is read-only anyway) is an attempt on the filesystem
    // too: the path it names, after the descriptor.
    for method in [
        "create-directory-at",
        "remove-directory-at",
        "unlink-file-at",
        "rename-at",
        "symlink-at",
        "link-at",
        "set-times-at",
    ] {
        linker
            .instance(&format!("wasi:filesystem/types@{v}"))?
            .func_new(
                &format!("[method]descriptor.{method}"),
                |mut store, _, params, _| {
                    let path = params
                        .iter()
                        .find_map(|p| match p {
                            Val::String(s) => Some(format!("/{}", s.trim_start_matches("./"))),
                            _ => None,
                        })
                        .unwrap_or_else(|| "/".to_string());
                    Err(store.data_mut().violate(Rule::Filesystem { path }))
                },
            )?;
    }
    linker.allow_shadowing(false);
    Ok(())
}

/// The empty directory WASI plugins see as `/`: `<cache>/empty-root` beside the compiled
/// plugins, or without a cache `inlet-empty-root-<uid>` in the temporary folder. It must be
/// an empty directory owned by this account and writable by no one else: a plugin can
/// open nothing in it (every open breaks [`Rule::Filesystem`]), but it could `stat` names.
pub(crate) fn empty_root(cache: Option<&Path>) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let uid = rustix::process::getuid().as_raw();
    let dir = match cache {
        Some(c) => c.join("empty-root"),
        None => std::env::temp_dir().join(format!("inlet-empty-root-{uid}")),
    };
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::DirBuilder::new().mode(0o500).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = std::fs::symlink_metadata(&dir)?;
    let refuse = |why: &str| {
        Err(std::io::Error::other(format!(
            "{}: {why}; remove it and inlet makes it again",
            dir.display()
        )))
    };
    if !meta.is_dir() {
        return refuse("not a directory");
    }
    if meta.uid() != uid || meta.permissions().mode() & 0o022 != 0 {
        return refuse("owned or writable by another account");
    }
    if std::fs::read_dir(&dir)?.next().is_some() {
        return refuse("not empty");
    }
    Ok(dir)
}

/// The WASI context of one instance: no environment, no arguments, stdin closed, stdout and
/// stderr to the plugin's log, `/` an empty directory, no network.
pub(crate) fn context(
    plugin: &str,
    empty_root: Option<&Path>,
    net: Arc<PluginNet>,
    log_sink: Option<LogSink>,
    output: Arc<Mutex<OutputBudget>>,
) -> WasiCtx {
    let mut b = WasiCtxBuilder::new();
    let out = |stream: &'static str| PluginOutput {
        plugin: plugin.to_string(),
        stream,
        net: net.clone(),
        log_sink: log_sink.clone(),
        budget: output.clone(),
    };
    b.stdout(out("stdout"))
        .stderr(out("stderr"))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }));
    if let Some(root) = empty_root
        && let Err(e) = b.preopened_dir(root, "/", FsPerms::ReadOnly)
    {
        // Without the preopen, opening a file fails inside the plugin's libc instead of
        // breaking a rule: still nothing is reachable.
        tracing::warn!(plugin, error = %e, "cannot preopen the empty root of the plugin's WASI");
    }
    b.build()
}

/// What the instance has written to stdout and stderr, and the line being written.
#[derive(Debug, Default)]
pub(crate) struct OutputBudget {
    written: usize,
    line: Vec<u8>,
    /// Set when the limit was passed: the violation to report.
    pub(crate) exceeded: Option<Rule>,
}

/// stdout or stderr of a plugin instance: lines into the log.
#[derive(Clone)]
struct PluginOutput {
    plugin: String,
    stream: &'static str,
    net: Arc<PluginNet>,
    log_sink: Option<LogSink>,
    budget: Arc<Mutex<OutputBudget>>,
}

impl PluginOutput {
    fn emit(&self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = self.net.redact(text.trim_end_matches('\r'));
        let plugin = self.plugin.as_str();
        if self.stream == "stderr" {
            tracing::warn!(plugin, stream = self.stream, "{text}");
        } else {
            tracing::info!(plugin, stream = self.stream, "{text}");
        }
        if let Some(sink) = &self.log_sink
            && let Ok(mut s) = sink.lock()
        {
            s.push(format!("{plugin}: {text}"));
        }
    }

    fn take(&self, bytes: &[u8]) -> Result<(), Rule> {
        let Ok(mut b) = self.budget.lock() else {
            return Ok(());
        };
        if let Some(rule) = &b.exceeded {
            return Err(rule.clone());
        }
        b.written = b.written.saturating_add(bytes.len());
        if b.written > OUTPUT_LIMIT {
            let rule = Rule::OutputLimit {
                bytes: OUTPUT_LIMIT as u64,
            };
            b.exceeded = Some(rule.clone());
            return Err(rule);
        }
        for &byte in bytes {
            if byte == b'\n' {
                let line = std::mem::take(&mut b.line);
                if !line.is_empty() {
                    self.emit(&line);
                }
            } else if b.line.len() < LINE_LIMIT {
                b.line.push(byte);
            }
        }
        Ok(())
    }

    /// Nothing to do: a line is logged when it ends (CPython writes a line and its
    /// newline separately, each flushed; logging on flush would split every line). A last
    /// line without a newline is not logged.
    fn flush_line(&self) {}
}

impl IsTerminal for PluginOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for PluginOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for PluginOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for PluginOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.take(&bytes)
            .map_err(|rule| StreamError::trap(&format!("sandbox: {rule}")))
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.flush_line();
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl AsyncWrite for PluginOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(
            self.take(buf)
                .map(|()| buf.len())
                .map_err(|rule| io::Error::other(rule.to_string())),
        )
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.flush_line();
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.flush_line();
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_componentize_py_module_folders_are_module_roots() {
        for yes in [
            "python",
            "python/encodings",
            "bundled/x.py",
            "world",
            "0",
            "12/pkg",
        ] {
            assert!(module_root(yes), "{yes}");
        }
        for no in [
            "",
            ".",
            "etc/passwd",
            "pythonx",
            "home/python",
            "root",
            "0a",
        ] {
            assert!(!module_root(no), "{no}");
        }
    }

    #[test]
    fn wasi_imports_are_allowed_by_interface_and_version() {
        for ok in [
            "wasi:cli/stdout@0.2.0",
            "wasi:sockets/tcp@0.2.9",
            "wasi:filesystem/preopens@0.2.12",
        ] {
            assert!(allowed_import(ok), "{ok}");
        }
        for refused in [
            "wasi:http/outgoing-handler@0.2.0",
            "wasi:cli/stdout@0.3.0",
            "wasi:cli/stdout@0.2.99",
            "wasi:keyvalue/store@0.2.0",
            "wasi:cli/run@0.2.0",
            "inlet:plugin/host@0.1.0",
            "wasi:cli/stdout",
        ] {
            assert!(!allowed_import(refused), "{refused}");
        }
    }
}
