//! Log lines on stderr, for people or for log collectors.
//!
//! The filter comes from `--log` (or `INLET_LOG`), else `RUST_LOG`, else `-q`/`-v`
//! (`error`, `warn` by default, `info`, `debug`, `trace`); an invalid filter is an error,
//! never silently replaced. Text is coloured only when stderr is a terminal and `NO_COLOR`
//! is unset. `--log-format json` writes one JSON object per line: `timestamp`, `level`,
//! `target`, `message`, the event's fields, and the fields of every span it is in (`connection`
//! and `run_id` of the run, `stream` of the stream), so each line of a run names them.

use std::{fmt, io::IsTerminal};

use serde_json::{Map, Value};
use tracing::{Event, Subscriber, field::Field};
use tracing_subscriber::{
    EnvFilter,
    fmt::{
        FmtContext, FormatEvent, FormattedFields,
        format::{JsonFields, Writer},
        time::FormatTime,
    },
    registry::LookupSpan,
};

/// The format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Where the filter came from, for the error message.
fn chosen_filter(flag: Option<&str>, verbosity: i8) -> (String, &'static str) {
    if let Some(f) = flag {
        return (f.to_string(), "--log");
    }
    if let Ok(f) = std::env::var("RUST_LOG")
        && !f.trim().is_empty()
    {
        return (f, "RUST_LOG");
    }
    let level = match verbosity {
        i8::MIN..=-1 => "error",
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    (level.to_string(), "-q/-v")
}

/// Install the global subscriber. `verbosity` is the number of `-v` minus the number of `-q`.
pub fn init(flag: Option<&str>, verbosity: i8, format: LogFormat) -> Result<(), String> {
    let (text, origin) = chosen_filter(flag, verbosity);
    let filter = EnvFilter::builder().parse(&text).map_err(|e| {
        format!(
            "{origin} `{text}` is not a log filter ({e}): use error, warn, info, debug, trace, or `target=level,...` such as `inlet_runtime=debug`"
        )
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(color_wanted())
            .with_target(false)
            .try_init(),
        LogFormat::Json => builder
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines)
            .try_init(),
    }
    .map_err(|e| format!("cannot install the logger: {e}"))
}

/// Colour only for a person at a terminal: never into files or pipes, never with
/// `NO_COLOR` set (<https://no-color.org>).
fn color_wanted() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

/// One JSON object per event, span fields merged in at the top level.
struct JsonLines;

impl<S> FormatEvent<S, JsonFields> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = Map::new();
        let mut now = String::new();
        tracing_subscriber::fmt::time::SystemTime.format_time(&mut Writer::new(&mut now))?;
        line.insert("timestamp".into(), Value::String(now));
        line.insert(
            "level".into(),
            Value::String(event.metadata().level().to_string().to_lowercase()),
        );
        line.insert(
            "target".into(),
            Value::String(event.metadata().target().to_string()),
        );
        // Spans from the outermost in, then the event's own fields, which win.
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let ext = span.extensions();
                if let Some(fields) = ext.get::<FormattedFields<JsonFields>>() {
                    merge_span_fields(fields.as_str(), &mut line);
                }
            }
        }
        let mut visitor = JsonVisitor(&mut line);
        event.record(&mut visitor);
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// Span fields are stored (by [`JsonFields`]) as a JSON object: merge it in.
fn merge_span_fields(text: &str, into: &mut Map<String, Value>) {
    if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(text) {
        into.extend(fields);
    }
}

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl tracing::field::Visit for JsonVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().to_string(), Value::String(value.to_string()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(
            field.name().to_string(),
            Value::String(format!("{value:?}")),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_over_rust_log_and_verbosity_sets_the_default() {
        assert_eq!(chosen_filter(Some("debug"), -1).0, "debug");
        assert_eq!(chosen_filter(Some("debug"), -1).1, "--log");
        if std::env::var_os("RUST_LOG").is_none() {
            assert_eq!(chosen_filter(None, 0).0, "warn");
            assert_eq!(chosen_filter(None, -1).0, "error");
            assert_eq!(chosen_filter(None, 2).0, "debug");
        }
    }
}
