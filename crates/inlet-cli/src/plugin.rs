//! `inlet plugin new|build|install`: scaffold, build and install WebAssembly plugins,
//! written in Rust (this file) or Python ([`python`]).

pub mod python;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, bail};

use crate::Lang;

/// Where the plugin SDK lives when this inlet was built from a source checkout.
fn default_pdk() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("inlet-pdk")
}

/// `inlet plugin new <name>`: a plugin project from the template.
pub fn new(
    name: &str,
    dir: Option<&Path>,
    pdk: Option<&Path>,
    lang: Lang,
) -> anyhow::Result<PathBuf> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.starts_with(|c: char| c.is_ascii_lowercase());
    if !valid {
        bail!(
            "plugin name `{name}`: use lowercase letters, digits, `-` and `_`, starting with a letter"
        );
    }
    let dir = dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        bail!(
            "{}: exists and is not empty; choose another --dir",
            dir.display()
        );
    }
    if lang == Lang::Python {
        python::new(name, &dir)?;
        return Ok(dir);
    }
    let pdk = pdk.map(Path::to_path_buf).unwrap_or_else(default_pdk);
    let pdk = std::fs::canonicalize(&pdk).with_context(|| {
        format!(
            "the plugin SDK (inlet-pdk) is not at {}; pass --pdk <path to crates/inlet-pdk>",
            pdk.display()
        )
    })?;
    std::fs::create_dir_all(dir.join("src"))?;
    let files = [
        ("Cargo.toml", CARGO_TOML),
        ("plugin.toml", PLUGIN_TOML),
        ("src/lib.rs", LIB_RS),
        (".gitignore", "/target\n"),
    ];
    for (file, template) in files {
        let text = template
            .replace("{{name}}", name)
            .replace("{{crate}}", &format!("inlet-plugin-{name}"))
            .replace("{{pdk}}", &pdk.display().to_string().replace('\\', "/"));
        std::fs::write(dir.join(file), text)
            .with_context(|| format!("cannot write {}", dir.join(file).display()))?;
    }
    Ok(dir)
}

const CARGO_TOML: &str = r#"[package]
name = "{{crate}}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
inlet-pdk = { path = "{{pdk}}" }
serde = { version = "1", features = ["derive"] }
serde_json = "1"

# A plugin is its own workspace.
[workspace]

[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
panic = "abort"
strip = true
"#;

const PLUGIN_TOML: &str = r#"# Read by inlet beside plugin.wasm.
name = "{{name}}"
version = "0.1.0"
description = "{{name}} (a plugin made from the template)"
interface = "inlet:plugin@0.1.0"
# Every host the plugin may contact. The operator must allow them too
# ([connections.<c>.config.sandbox] allow_hosts).
hosts = ["api.example.com"]
"#;

const LIB_RS: &str = r##"//! {{name}}: an inlet source plugin. One stream, `things`, read page by page from
//! `<base_url>/things?page=N`, which answers `{"items": [{"id": 1, "name": "a"}], "next": 2}`.

use std::cell::RefCell;

use inlet_pdk::{
    BatchBuilder, CheckItem, ColumnType, Event, Field, Guest, PluginError, ReadRequest,
    StreamInfo, config, field, http::Request, state,
};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_base")]
    base_url: String,
}

fn default_base() -> String {
    "https://api.example.com".into()
}

#[derive(Deserialize)]
struct Page {
    items: Vec<Thing>,
    next: Option<i64>,
}

#[derive(Deserialize)]
struct Thing {
    id: i64,
    name: Option<String>,
}

/// The resume point: the next page to read.
#[derive(Serialize, Deserialize)]
struct Cursor {
    page: i64,
}

struct Reading {
    base: String,
    page: Option<i64>,
}

thread_local! {
    static READ: RefCell<Option<Reading>> = const { RefCell::new(None) };
}

fn fields() -> Vec<Field> {
    vec![field("id", ColumnType::Int64, false), field("name", ColumnType::Utf8, true)]
}

struct Plugin;

impl Guest for Plugin {
    fn spec() -> String {
        r#"{"type":"object","additionalProperties":false,"properties":{"base_url":{"type":"string"}}}"#.into()
    }

    fn validate(config: String) -> Result<(), PluginError> {
        config::parse::<Config>(&config).map(|_| ())
    }

    fn check(config: String) -> Result<Vec<CheckItem>, PluginError> {
        let c: Config = config::parse(&config)?;
        let ok = Request::get(format!("{}/things?page=1", c.base_url)).json::<Page>();
        Ok(vec![CheckItem {
            name: "api reachable".into(),
            ok: ok.is_ok(),
            message: match ok {
                Ok(_) => c.base_url,
                Err(e) => format!("{e:?}"),
            },
        }])
    }

    fn discover(_config: String) -> Result<Vec<StreamInfo>, PluginError> {
        Ok(vec![StreamInfo {
            name: "things".into(),
            fields: fields(),
            primary_key: vec!["id".into()],
            cursor_candidates: vec![],
            incremental: true,
        }])
    }

    fn open(request: ReadRequest) -> Result<(), PluginError> {
        let c: Config = config::parse(&request.config)?;
        let saved: Option<Cursor> = state::parse(request.state.as_deref())?;
        let page = saved.map_or(1, |s| s.page);
        READ.with(|r| *r.borrow_mut() = Some(Reading { base: c.base_url, page: Some(page) }));
        Ok(())
    }

    fn next() -> Result<Option<Vec<Event>>, PluginError> {
        READ.with(|r| {
            let mut r = r.borrow_mut();
            let Some(reading) = r.as_mut() else {
                return Err(PluginError::Other("next before open".into()));
            };
            let Some(page) = reading.page else {
                return Ok(None);
            };
            let body: Page = Request::get(format!("{}/things?page={page}", reading.base)).json()?;
            let mut b = BatchBuilder::new(&fields());
            for t in &body.items {
                b.int64(0, t.id)?;
                if let Some(n) = &t.name {
                    b.utf8(1, n.as_str())?;
                }
                b.end_row()?;
            }
            reading.page = body.next;
            let mut events = vec![Event::Batch(b.finish())];
            // Resume at the next page; after the last one, re-read it next time (it may
            // have grown; rows repeat, deduplicate downstream by the primary key).
            events.push(state::checkpoint(&Cursor { page: body.next.unwrap_or(page) })?);
            Ok(Some(events))
        })
    }
}

inlet_pdk::export_plugin!(Plugin);
"##;

fn run(cmd: &mut Command) -> anyhow::Result<bool> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
    Ok(status.success())
}

fn wasm_target_installed() -> bool {
    Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("wasm32-unknown-unknown"))
        .unwrap_or(false)
}

/// `inlet plugin build [dir]`: a Python plugin (`plugin.py`) through componentize-py;
/// a Rust one by cargo build for wasm32-unknown-unknown, then made a component. Writes
/// `<dir>/<manifest wasm>` (default `plugin.wasm`).
pub fn build(dir: &Path) -> anyhow::Result<PathBuf> {
    if python::is_python(dir) {
        return python::build(dir);
    }
    let manifest_path = dir.join("Cargo.toml");
    let cargo_toml: toml::Value = toml::from_str(
        &std::fs::read_to_string(&manifest_path)
            .with_context(|| format!("{}: not a plugin project", manifest_path.display()))?,
    )
    .with_context(|| format!("{}", manifest_path.display()))?;
    let crate_name = cargo_toml
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .context("Cargo.toml has no [package] name")?
        .replace('-', "_");
    let (plugin, _) = inlet_wasm::Manifest::load(dir)?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| metadata_target_dir(dir).unwrap_or_else(|| dir.join("target")));

    let mut via_rustup = wasm_target_installed();
    if !via_rustup {
        eprintln!("inlet: installing the wasm32-unknown-unknown target (rustup, up to 300 s)");
        via_rustup = run(Command::new("timeout").args([
            "300",
            "rustup",
            "target",
            "add",
            "wasm32-unknown-unknown",
        ]))
        .unwrap_or(false);
    }
    let ok = if via_rustup {
        run(Command::new("cargo")
            .current_dir(dir)
            .args(["build", "--release", "--target", "wasm32-unknown-unknown"])
            .env("CARGO_TARGET_DIR", &target_dir))?
    } else {
        // The Debian toolchain route (no download from rustup's servers): the packaged
        // compiler, std rebuilt from the packaged sources, linked by wasm-ld.
        eprintln!(
            "inlet: rustup could not add the target; using the Debian toolchain (needs: apt-get install rustc-web cargo-web rust-web-src lld-22)"
        );
        if !Path::new("/usr/bin/cargo").exists() || which("wasm-ld-22").is_none() {
            bail!(
                "no wasm32 toolchain: `rustup target add wasm32-unknown-unknown` failed and the Debian route is not installed; run `apt-get update && apt-get install -y --no-install-recommends rustc-web cargo-web rust-web-src lld-22` and retry"
            );
        }
        let path = format!("/usr/bin:{}", std::env::var("PATH").unwrap_or_default());
        run(Command::new("/usr/bin/cargo")
            .current_dir(dir)
            .args([
                "build",
                "--release",
                "-Zbuild-std=std,panic_abort",
                "--target",
                "wasm32-unknown-unknown",
            ])
            .env("PATH", path)
            .env("RUSTC_BOOTSTRAP", "1")
            .env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER", "wasm-ld-22")
            .env("CARGO_TARGET_DIR", target_dir.join("debian")))?
    };
    if !ok {
        bail!("cargo build of the plugin failed (see above)");
    }
    let core_dir = if via_rustup {
        target_dir.clone()
    } else {
        target_dir.join("debian")
    };
    let core = core_dir
        .join("wasm32-unknown-unknown")
        .join("release")
        .join(format!("{crate_name}.wasm"));
    let bytes = std::fs::read(&core).with_context(|| format!("cannot read {}", core.display()))?;
    let component = inlet_wasm::componentize::componentize(&bytes)
        .map_err(|e| anyhow::anyhow!("plugin `{}`: {e}", plugin.name))?;
    let out = dir.join(&plugin.wasm);
    std::fs::write(&out, component).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(out)
}

fn metadata_target_dir(dir: &Path) -> Option<PathBuf> {
    let out = Command::new("cargo")
        .current_dir(dir)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v.get("target_directory")?.as_str().map(PathBuf::from)
}

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(bin))
            .find(|f| f.is_file())
    })
}

/// `inlet plugin install <dir>`: check the plugin loads (interface, imports) and copy
/// its manifest and component into the plugins folder.
pub fn install(
    host: &inlet_wasm::PluginHost,
    from: &Path,
    plugins_dir: &Path,
) -> anyhow::Result<inlet_wasm::Manifest> {
    let loaded = host.load_dir(from)?;
    let m = loaded.manifest.clone();
    let dest = plugins_dir.join(&m.name);
    std::fs::create_dir_all(&dest).with_context(|| format!("cannot create {}", dest.display()))?;
    std::fs::copy(from.join("plugin.toml"), dest.join("plugin.toml"))
        .with_context(|| format!("cannot copy plugin.toml into {}", dest.display()))?;
    std::fs::copy(from.join(&m.wasm), dest.join(&m.wasm))
        .with_context(|| format!("cannot copy {} into {}", m.wasm, dest.display()))?;
    Ok(m)
}
