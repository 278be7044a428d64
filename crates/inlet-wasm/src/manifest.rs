//! `plugin.toml`: what a plugin says about itself, read before its code is loaded.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::WasmError;

/// The interface version this host implements.
pub const INTERFACE: &str = "inlet:plugin@0.1.0";

/// A plugin's manifest (`plugin.toml` beside `plugin.wasm`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The connector name connections use.
    pub name: String,
    /// The plugin's version.
    pub version: String,
    /// One line on what it reads.
    #[serde(default)]
    pub description: String,
    /// The WIT world it implements; MUST be [`INTERFACE`].
    pub interface: String,
    /// The network hosts it may contact (exact names or IP addresses). The operator must
    /// allow each too.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// The component file, relative to the manifest (default `plugin.wasm`).
    #[serde(default = "default_wasm")]
    pub wasm: String,
}

fn default_wasm() -> String {
    "plugin.wasm".to_string()
}

impl Manifest {
    /// Parse manifest text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, WasmError> {
        let m: Manifest = toml::from_str(text).map_err(|e| WasmError::Load {
            plugin: origin.to_string(),
            message: format!("manifest: {e}"),
        })?;
        if m.interface != INTERFACE {
            return Err(WasmError::Load {
                plugin: m.name.clone(),
                message: format!(
                    "manifest `interface = \"{}\"`: this inlet implements {INTERFACE}; rebuild the plugin against it",
                    m.interface
                ),
            });
        }
        let valid = !m.name.is_empty()
            && m.name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !valid {
            return Err(WasmError::Load {
                plugin: m.name.clone(),
                message: "manifest `name`: use lowercase letters, digits, `-` and `_`".into(),
            });
        }
        for h in &m.hosts {
            if h.is_empty() || h.contains(['/', ':', '*', ' ']) {
                return Err(WasmError::Load {
                    plugin: m.name.clone(),
                    message: format!(
                        "manifest `hosts`: `{h}` is not a host name (no scheme, port, path or wildcard)"
                    ),
                });
            }
        }
        Ok(m)
    }

    /// Read `dir/plugin.toml`.
    pub fn load(dir: &Path) -> Result<(Self, PathBuf), WasmError> {
        let path = dir.join("plugin.toml");
        let text = std::fs::read_to_string(&path).map_err(|e| WasmError::Load {
            plugin: dir.display().to_string(),
            message: format!("cannot read {}: {e}", path.display()),
        })?;
        let m = Manifest::parse(&text, &path.display().to_string())?;
        let wasm = dir.join(&m.wasm);
        Ok((m, wasm))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn manifest_rejects_other_interfaces_and_wildcard_hosts() {
        let ok =
            "name = \"hn\"\nversion = \"1\"\ninterface = \"inlet:plugin@0.1.0\"\nhosts = [\"a.b\"]";
        assert_eq!(Manifest::parse(ok, "t").unwrap().hosts, vec!["a.b"]);
        let old = ok.replace("0.1.0", "0.0.9");
        assert!(
            Manifest::parse(&old, "t")
                .unwrap_err()
                .to_string()
                .contains("implements inlet:plugin@0.1.0")
        );
        let wild = ok.replace("a.b", "*.b");
        assert!(
            Manifest::parse(&wild, "t")
                .unwrap_err()
                .to_string()
                .contains("hosts")
        );
        let unknown = format!("{ok}\nnetwork = true");
        assert!(
            Manifest::parse(&unknown, "t")
                .unwrap_err()
                .to_string()
                .contains("network")
        );
    }
}
