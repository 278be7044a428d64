//! The manifest: everything one API needs, as data (TOML, versioned, validated).
//!
//! See the README section "REST connector manifest" for the reference; the types below
//! are that reference in code, and their doc comments say what each key does.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use toml::Spanned;

use crate::json::{ConflictPolicy, NestedPolicy};

/// The manifest format this build reads.
pub const MANIFEST_VERSION: u32 = 1;

/// A parsed, validated manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format version; must be 1.
    pub manifest_version: u32,
    /// The API's name (for messages and the User-Agent).
    pub name: String,
    /// One line on what it reads.
    #[serde(default)]
    pub description: String,
    /// The API's root URL, e.g. `https://api.github.com`. The connection's `base_url`
    /// overrides it (GitHub Enterprise, a test server).
    pub base_url: String,
    /// The connection config keys the manifest reads, by name.
    #[serde(default)]
    pub config: BTreeMap<String, ConfigField>,
    /// How requests authenticate.
    #[serde(default)]
    pub auth: AuthDef,
    /// Headers and limits for every request.
    #[serde(default)]
    pub http: HttpDef,
    /// Pagination used by streams that do not declare their own.
    #[serde(default)]
    pub pagination: Option<Pagination>,
    /// The stream whose first page `inlet check` fetches (default: the first top-level
    /// stream by name). Pick a cheap one.
    #[serde(default)]
    pub check_stream: Option<String>,
    /// The streams, by name.
    pub streams: BTreeMap<String, Spanned<StreamDef>>,
}

/// A connection config key the manifest reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigField {
    /// `string`, `secret`, `list` (of strings) or `integer`.
    #[serde(rename = "type")]
    pub kind: ConfigType,
    /// Whether the connection must set it.
    #[serde(default)]
    pub required: bool,
    /// The value when the connection does not set it.
    #[serde(default)]
    pub default: Option<toml::Value>,
    /// What it is, for `inlet spec`.
    #[serde(default)]
    pub description: String,
}

/// Type of a config key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigType {
    /// Text.
    String,
    /// A secret: a literal, `${env:NAME}` or `${file:PATH}`; usable only in `auth`.
    Secret,
    /// A list of strings (e.g. repositories), usable in `for_each`.
    List,
    /// An integer.
    Integer,
}

/// Authentication. Secret values are references to `secret` config keys, written as
/// `"{config.token}"` (the whole value, never inside other text).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthDef {
    /// No credentials.
    #[default]
    None,
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// `{config.KEY}` of a secret key.
        token: String,
    },
    /// HTTP basic auth.
    Basic {
        /// The user name: text, may reference config.
        username: String,
        /// `{config.KEY}` of a secret key (may be left empty, as Stripe does).
        #[serde(default)]
        password: Option<String>,
    },
    /// An API key in a header or a query parameter.
    ApiKey {
        /// `{config.KEY}` of a secret key.
        key: String,
        /// Header to send it in.
        #[serde(default)]
        header: Option<String>,
        /// Query parameter to send it in.
        #[serde(default)]
        param: Option<String>,
    },
    /// OAuth2 refresh-token grant.
    Oauth2Refresh {
        /// Token endpoint URL.
        token_url: String,
        /// Client id (text, may reference config).
        client_id: String,
        /// `{config.KEY}` of a secret key.
        client_secret: String,
        /// `{config.KEY}` of a secret key.
        refresh_token: String,
        /// Scopes to request.
        #[serde(default)]
        scopes: Vec<String>,
    },
}

/// Request settings shared by every stream.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpDef {
    /// Headers sent with every request (not secrets).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Requests per second per host (the connection's `requests_per_second` overrides).
    #[serde(default)]
    pub requests_per_second: Option<f64>,
    /// Requests in flight per host.
    #[serde(default)]
    pub max_concurrency: Option<usize>,
}

/// How a stream walks its pages.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Pagination {
    /// One request.
    None,
    /// RFC 8288 `Link` header, `rel="next"` (GitHub).
    LinkHeader,
    /// The next page's URL is in the body.
    NextUrl {
        /// Dotted path of the URL in the body, e.g. `links.next`.
        path: String,
    },
    /// A cursor taken from the last record or the body, sent as a parameter (Stripe).
    Cursor {
        /// Query parameter carrying the cursor, e.g. `starting_after`.
        param: String,
        /// Field of the last record holding the cursor, e.g. `id`.
        #[serde(default)]
        record_field: Option<String>,
        /// Or: dotted path of the cursor in the body, e.g. `meta.next_cursor`.
        #[serde(default)]
        body_path: Option<String>,
        /// Dotted path of a boolean saying whether more pages exist, e.g. `has_more`.
        #[serde(default)]
        has_more: Option<String>,
    },
    /// `offset` and `limit` parameters; stops at a short page.
    Offset {
        /// Offset parameter name.
        #[serde(default = "default_offset_param")]
        offset_param: String,
        /// Limit parameter name.
        #[serde(default = "default_limit_param")]
        limit_param: String,
        /// Records per page.
        limit: u64,
    },
    /// A page number parameter; stops at a short or empty page.
    PageNumber {
        /// Page parameter name.
        #[serde(default = "default_page_param")]
        param: String,
        /// First page's number.
        #[serde(default = "default_start_page")]
        start: u64,
        /// Page size parameter name, if the API takes one.
        #[serde(default)]
        size_param: Option<String>,
        /// Records per page.
        size: u64,
    },
}

fn default_offset_param() -> String {
    "offset".into()
}
fn default_limit_param() -> String {
    "limit".into()
}
fn default_page_param() -> String {
    "page".into()
}
fn default_start_page() -> u64 {
    1
}

/// Incremental reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Incremental {
    /// Field of each record that only grows (`updated_at`, `created`).
    pub cursor_field: String,
    /// Request parameter that asks for records with a cursor at or after a value
    /// (`since`, `created[gte]`).
    pub request_param: String,
    /// How the parameter is written: `rfc3339` (default) or `unix` (seconds).
    #[serde(default)]
    pub format: CursorFormat,
    /// Ask again for this much before the saved cursor (late writes): `30s`, `5m`, `1h`.
    /// Records in that window are landed again (the raw layer is append-only; dedupe
    /// by primary key downstream).
    #[serde(default)]
    pub lookback: Option<String>,
    /// Where a first sync starts (RFC 3339), may reference config, e.g.
    /// `{config.start_date}`; empty means from the beginning.
    #[serde(default)]
    pub start: Option<String>,
}

/// How a cursor is written in a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CursorFormat {
    /// `2026-11-24T10:00:00Z`.
    #[default]
    Rfc3339,
    /// Seconds since the epoch.
    Unix,
}

/// Read the stream once per value of a config list (e.g. once per repository).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForEach {
    /// The `list` config key.
    pub config: String,
    /// The variable name templates use, e.g. `repo` for `{repo}`.
    #[serde(rename = "as")]
    pub var: String,
    /// Add the value as a column of this name (when records do not say it).
    #[serde(default)]
    pub column: Option<String>,
}

/// A child stream: read once per record of a parent stream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParentDef {
    /// The parent stream's name.
    pub stream: String,
    /// Variables taken from each parent record: name → dotted field path. Used in the
    /// child's path as `{parent.NAME}`.
    pub fields: BTreeMap<String, String>,
    /// Ask the parent only for records changed since the child's cursor (sending the
    /// child's incremental parameter to the parent); right when a child record changing
    /// updates its parent (GitHub: a new comment updates the issue's `updated_at`).
    #[serde(default)]
    pub incremental: bool,
    /// Add parent fields as columns: column name → variable name.
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
}

/// The schema of a stream.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaDef {
    /// Declared columns: name → type (`int64`, `float64`, `bool`, `string`, `timestamp`,
    /// `unix_timestamp`, `date`, `decimal(P,S)`, `json`). Other fields are inferred.
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
    /// Nested objects as `struct` (default) or `json` text.
    #[serde(default)]
    pub nested: NestedPolicy,
    /// Type conflicts: `widen` (default, to text) or `fail`.
    #[serde(default)]
    pub type_conflict: ConflictPolicy,
}

/// One stream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamDef {
    /// Path under the base URL, with `{config.KEY}`, `{VAR}` and `{parent.NAME}`.
    pub path: String,
    /// Query parameters (templated like the path).
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Dotted path of the records in the body (`data`); absent: the body itself (an
    /// array of records, or one record).
    #[serde(default)]
    pub record_selector: Option<String>,
    /// Primary key fields.
    #[serde(default)]
    pub primary_key: Vec<String>,
    /// Pagination (default: the manifest's).
    #[serde(default)]
    pub pagination: Option<Pagination>,
    /// Incremental reads, if the API can filter by a cursor.
    #[serde(default)]
    pub incremental: Option<Incremental>,
    /// Read once per value of a config list.
    #[serde(default)]
    pub for_each: Option<ForEach>,
    /// Read once per record of a parent stream.
    #[serde(default)]
    pub parent: Option<ParentDef>,
    /// Declared columns and policies.
    #[serde(default)]
    pub schema: SchemaDef,
}

/// A manifest problem, with the line it is on.
#[derive(Debug, Clone, thiserror::Error)]
#[error("manifest {file}{}: {message}", line.map(|l| format!(", line {l}")).unwrap_or_default())]
pub struct ManifestError {
    /// The manifest's file name.
    pub file: String,
    /// 1-based line.
    pub line: Option<usize>,
    /// What is wrong and what to write instead.
    pub message: String,
}

impl Manifest {
    /// Parse and validate manifest `text` (named `file` in messages).
    pub fn parse(file: &str, text: &str) -> Result<Manifest, ManifestError> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            ManifestError {
                file: file.to_string(),
                line,
                message: e.message().trim().to_string(),
            }
        })?;
        manifest.validate(file, text)?;
        Ok(manifest)
    }

    /// The stream called `name`.
    pub fn stream(&self, name: &str) -> Option<&StreamDef> {
        self.streams.get(name).map(Spanned::get_ref)
    }

    /// The pagination of a stream.
    pub fn pagination_of<'a>(&'a self, stream: &'a StreamDef) -> &'a Pagination {
        stream
            .pagination
            .as_ref()
            .or(self.pagination.as_ref())
            .unwrap_or(&Pagination::None)
    }

    fn validate(&self, file: &str, text: &str) -> Result<(), ManifestError> {
        let top = |message: String| ManifestError {
            file: file.to_string(),
            line: None,
            message,
        };
        if self.manifest_version != MANIFEST_VERSION {
            return Err(ManifestError {
                file: file.to_string(),
                line: find_line(text, "manifest_version"),
                message: format!(
                    "manifest_version {} is not supported by this inlet (it reads version {MANIFEST_VERSION})",
                    self.manifest_version
                ),
            });
        }
        if self.streams.is_empty() {
            return Err(top("declare at least one [streams.NAME]".into()));
        }
        if let Some(c) = &self.check_stream
            && self.stream(c).is_none_or(|s| s.parent.is_some())
        {
            return Err(ManifestError {
                file: file.to_string(),
                line: find_line(text, "check_stream"),
                message: format!("check_stream = \"{c}\" must name a stream without a parent"),
            });
        }
        let config_keys: BTreeSet<&str> = self.config.keys().map(String::as_str).collect();
        let secret_ref = |what: &str, value: &str| -> Result<(), ManifestError> {
            match config_ref(value) {
                Some(key)
                    if self
                        .config
                        .get(key)
                        .is_some_and(|c| c.kind == ConfigType::Secret) =>
                {
                    Ok(())
                }
                _ => Err(ManifestError {
                    file: file.to_string(),
                    line: find_line(text, "[auth]"),
                    message: format!(
                        "auth.{what} must be exactly \"{{config.KEY}}\" naming a config key of type \"secret\" (got {value:?}); secrets are never written into a manifest or templated into text"
                    ),
                }),
            }
        };
        match &self.auth {
            AuthDef::None => {}
            AuthDef::Bearer { token } => secret_ref("token", token)?,
            AuthDef::Basic { password, .. } => {
                if let Some(p) = password {
                    secret_ref("password", p)?;
                }
            }
            AuthDef::ApiKey { key, header, param } => {
                secret_ref("key", key)?;
                if header.is_some() == param.is_some() {
                    return Err(top(
                        "auth type \"api_key\": set exactly one of `header` or `param`".into(),
                    ));
                }
            }
            AuthDef::Oauth2Refresh {
                client_secret,
                refresh_token,
                ..
            } => {
                secret_ref("client_secret", client_secret)?;
                secret_ref("refresh_token", refresh_token)?;
            }
        }
        for (name, spanned) in &self.streams {
            let stream = spanned.get_ref();
            let err = |message: String| ManifestError {
                file: file.to_string(),
                line: Some(line_of(text, spanned.span().start)),
                message: format!("stream `{name}`: {message}"),
            };
            let mut vars: BTreeSet<String> = BTreeSet::new();
            if let Some(fe) = &stream.for_each {
                match self.config.get(&fe.config) {
                    Some(c) if c.kind == ConfigType::List => {}
                    _ => {
                        return Err(err(format!(
                            "for_each.config = \"{}\" must name a config key of type \"list\"",
                            fe.config
                        )));
                    }
                }
                vars.insert(fe.var.clone());
            }
            if let Some(parent) = &stream.parent {
                let Some(p) = self.stream(&parent.stream) else {
                    return Err(err(format!(
                        "parent.stream = \"{}\" is not a stream of this manifest",
                        parent.stream
                    )));
                };
                if p.parent.is_some() {
                    return Err(err(
                        "a parent stream cannot itself have a parent (one level of nesting)".into(),
                    ));
                }
                if p.for_each.as_ref().map(|f| &f.config)
                    != stream.for_each.as_ref().map(|f| &f.config)
                {
                    return Err(err(format!(
                        "the parent `{}` and this stream must have the same for_each",
                        parent.stream
                    )));
                }
                if parent.incremental && stream.incremental.is_none() {
                    return Err(err(
                        "parent.incremental needs this stream's [incremental] section".into(),
                    ));
                }
                for (col, var) in &parent.columns {
                    if !parent.fields.contains_key(var) {
                        return Err(err(format!(
                            "parent.columns.{col} = \"{var}\" is not a key of parent.fields"
                        )));
                    }
                }
                for v in parent.fields.keys() {
                    vars.insert(format!("parent.{v}"));
                }
            }
            let mut templates = vec![("path", stream.path.as_str())];
            templates.extend(stream.params.values().map(|v| ("params", v.as_str())));
            if let Some(inc) = &stream.incremental {
                if let Some(s) = &inc.start {
                    templates.push(("incremental.start", s));
                }
                if let Some(l) = &inc.lookback {
                    parse_duration(l).map_err(|m| err(format!("incremental.lookback: {m}")))?;
                }
            }
            for (what, t) in templates {
                check_template(t, &config_keys, &vars, &self.config)
                    .map_err(|m| err(format!("{what}: {m}")))?;
            }
            if !stream.path.starts_with('/') {
                return Err(err(format!(
                    "path must start with `/` (got {:?})",
                    stream.path
                )));
            }
            match self.pagination_of(stream) {
                Pagination::Cursor {
                    record_field,
                    body_path,
                    ..
                } if record_field.is_some() == body_path.is_some() => {
                    return Err(err(
                        "cursor pagination: set exactly one of `record_field` or `body_path`"
                            .into(),
                    ));
                }
                Pagination::Offset { limit: 0, .. } | Pagination::PageNumber { size: 0, .. } => {
                    return Err(err("page size must be at least 1".into()));
                }
                _ => {}
            }
            for (col, ty) in &stream.schema.columns {
                crate::json::declared_type(col, ty)
                    .map_err(|m| err(format!("schema.columns.{col}: {m}")))?;
            }
        }
        Ok(())
    }
}

/// `KEY` of a whole-value `{config.KEY}` reference.
pub fn config_ref(value: &str) -> Option<&str> {
    value
        .strip_prefix("{config.")
        .and_then(|v| v.strip_suffix('}'))
        .filter(|k| !k.contains(['{', '}']))
}

fn check_template(
    template: &str,
    config_keys: &BTreeSet<&str>,
    vars: &BTreeSet<String>,
    config: &BTreeMap<String, ConfigField>,
) -> Result<(), String> {
    for name in placeholders(template)? {
        if let Some(key) = name.strip_prefix("config.") {
            if !config_keys.contains(key) {
                return Err(format!(
                    "`{{{name}}}`: `{key}` is not declared under [config]"
                ));
            }
            if config
                .get(key)
                .is_some_and(|c| c.kind == ConfigType::Secret)
            {
                return Err(format!(
                    "`{{{name}}}` is a secret; secrets may only be used in [auth]"
                ));
            }
        } else if !vars.contains(name) {
            return Err(format!(
                "`{{{name}}}` is not a variable here (for_each `as`, or parent.NAME from parent.fields)"
            ));
        }
    }
    Ok(())
}

/// The `{name}` placeholders of a template.
pub fn placeholders(template: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed `{{` in {template:?}"))?;
        out.push(&after[..end]);
        rest = &after[end + 1..];
    }
    Ok(out)
}

/// Replace placeholders by `lookup`'s values.
pub fn render(template: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed `{{` in {template:?}"))?;
        let name = &after[..end];
        let value = lookup(name).ok_or_else(|| format!("no value for `{{{name}}}`"))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `30s`, `5m`, `2h`, `1d` as seconds.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: i64 = num
        .parse()
        .map_err(|_| format!("{text:?}: write a number and a unit, e.g. 30s, 5m, 1h"))?;
    let mult = match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("{text:?}: unit must be s, m, h or d")),
    };
    Ok(n * mult)
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn find_line(text: &str, needle: &str) -> Option<usize> {
    text.find(needle).map(|o| line_of(text, o))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    const GOOD: &str = r#"
manifest_version = 1
name = "demo"
base_url = "https://api.example.com"

[config.token]
type = "secret"
required = true

[config.repos]
type = "list"
required = true

[auth]
type = "bearer"
token = "{config.token}"

[pagination]
type = "link_header"

[streams.issues]
path = "/repos/{repo}/issues"
for_each = { config = "repos", as = "repo" }

[streams.comments]
path = "/repos/{repo}/issues/{parent.number}/comments"
for_each = { config = "repos", as = "repo" }
parent = { stream = "issues", fields = { number = "number" } }
"#;

    #[test]
    fn a_good_manifest_parses() {
        let m = Manifest::parse("demo.toml", GOOD).unwrap();
        assert_eq!(m.streams.len(), 2);
        assert_eq!(
            m.pagination_of(m.stream("issues").unwrap()),
            &Pagination::LinkHeader
        );
    }

    #[test]
    fn errors_point_at_the_line() {
        // An unknown key (a typo) in the comments stream, line 28.
        let bad = GOOD.replace("parent = {", "parnet = {");
        let err = Manifest::parse("demo.toml", &bad).unwrap_err();
        assert_eq!(err.line, Some(28), "{err}");
        assert!(err.to_string().contains("parnet"), "{err}");
        // A template naming an unknown variable: the stream's table line (22).
        let bad = GOOD.replace("/repos/{repo}/issues\"", "/repos/{repository}/issues\"");
        let err = Manifest::parse("demo.toml", &bad).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        assert!(err.to_string().contains("{repository}"), "{err}");
        // A secret written into the manifest instead of a reference.
        let bad = GOOD.replace("token = \"{config.token}\"", "token = \"ghp_abc\"");
        let err = Manifest::parse("demo.toml", &bad).unwrap_err();
        assert!(err.to_string().contains("auth.token"), "{err}");
        assert_eq!(err.line, Some(14), "{err}");
        let bad = GOOD.replace("manifest_version = 1", "manifest_version = 2");
        let err = Manifest::parse("demo.toml", &bad).unwrap_err();
        assert_eq!(err.line, Some(2), "{err}");
    }

    #[test]
    fn templates_and_durations() {
        let r = render("/repos/{repo}/x", &|n| {
            (n == "repo").then(|| "o/r".to_string())
        })
        .unwrap();
        assert_eq!(r, "/repos/o/r/x");
        assert!(render("/{nope}", &|_| None).is_err());
        assert_eq!(parse_duration("5m").unwrap(), 300);
        assert!(parse_duration("5 minutes").is_err());
    }
}
