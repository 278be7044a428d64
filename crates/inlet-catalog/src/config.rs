//! The `catalog` key of a destination, and how connections and streams are named as
//! databases and tables.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::CatalogError;

/// `[destinations.<name>] catalog = { type = "glue", database = "raw_shop",
/// region = "eu-west-1", endpoint = "http://127.0.0.1:5000", table_prefix = "shop_" }`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogConfig {
    /// Which catalog: `glue`.
    #[serde(rename = "type")]
    pub kind: CatalogKind,
    /// The database every stream of the destination is a table in (default: one
    /// database per connection, named after it).
    #[serde(default)]
    pub database: Option<String>,
    /// Put before every table name (for several connections in one database).
    #[serde(default)]
    pub table_prefix: Option<String>,
    /// The catalog's region (default: the AWS environment or profile).
    #[serde(default)]
    pub region: Option<String>,
    /// Endpoint URL of a Glue-compatible API (tests, VPC endpoints).
    #[serde(default)]
    pub endpoint: Option<String>,
}

/// The catalogs inlet registers tables in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CatalogKind {
    /// The AWS Glue Data Catalog (Athena, EMR, Glue jobs, Redshift Spectrum).
    Glue,
}

impl CatalogConfig {
    /// Check what serde cannot: the names are names a catalog accepts.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(db) = &self.database
            && (db.is_empty() || sanitize(db) != *db)
        {
            return Err(format!(
                "catalog.database `{db}`: use lowercase a-z, 0-9 and '_' only, not starting with a digit (for example `{}`)",
                sanitize(db)
            ));
        }
        if let Some(prefix) = &self.table_prefix
            && !prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(format!(
                "catalog.table_prefix `{prefix}`: use lowercase a-z, 0-9 and '_' only"
            ));
        }
        Ok(())
    }
}

/// A name Glue, Athena, Hive and Spark all accept unquoted: ASCII-lowercase, every
/// character outside `[a-z0-9_]` becomes `_`, a leading digit gets a `_` prefix.
pub fn sanitize(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// The database of a connection's tables: the configured one, or the connection's
/// name sanitized ([`sanitize`]).
pub fn database_name(connection: &str, config: Option<&CatalogConfig>) -> String {
    match config.and_then(|c| c.database.as_deref()) {
        Some(db) => db.to_string(),
        None => sanitize(connection),
    }
}

/// The table of a stream: the configured prefix, then the stream's name sanitized
/// ([`sanitize`]): `public.orders` is `public_orders`.
pub fn table_name(stream: &str, config: Option<&CatalogConfig>) -> String {
    let prefix = config.and_then(|c| c.table_prefix.as_deref()).unwrap_or("");
    let name = sanitize(stream);
    if prefix.is_empty() {
        name
    } else {
        // A prefix ending in '_' and a name starting with the '_' of a leading digit
        // would double it; the prefix already keeps the name from starting with a digit.
        let name = match name.strip_prefix('_') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_digit()) => rest.to_string(),
            _ => name,
        };
        format!("{prefix}{name}")
    }
}

/// Check that the streams of one connection map to distinct tables; the error names
/// both streams of the first clash.
pub fn check_table_names<'a>(
    connection: &str,
    streams: impl IntoIterator<Item = &'a str>,
    config: Option<&CatalogConfig>,
) -> Result<(), CatalogError> {
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for stream in streams {
        let table = table_name(stream, config);
        if let Some(first) = seen.get(&table) {
            if *first != stream {
                return Err(CatalogError::NameClash {
                    connection: connection.to_string(),
                    first: first.to_string(),
                    second: stream.to_string(),
                    table,
                });
            }
        } else {
            seen.insert(table, stream);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(database: Option<&str>, prefix: Option<&str>) -> CatalogConfig {
        CatalogConfig {
            kind: CatalogKind::Glue,
            database: database.map(str::to_string),
            table_prefix: prefix.map(str::to_string),
            region: None,
            endpoint: None,
        }
    }

    #[test]
    fn names_keep_only_what_every_catalog_accepts() {
        assert_eq!(table_name("public.orders", None), "public_orders");
        assert_eq!(table_name("Issue-Comments", None), "issue_comments");
        assert_eq!(table_name("2024_sales", None), "_2024_sales");
        assert_eq!(table_name("café", None), "caf_");
        assert_eq!(database_name("shop-eu", None), "shop_eu");
        assert_eq!(database_name("9shop", None), "_9shop");
        let c = config(Some("raw_shop"), Some("shop_"));
        assert_eq!(database_name("shop-eu", Some(&c)), "raw_shop");
        assert_eq!(table_name("public.orders", Some(&c)), "shop_public_orders");
        assert_eq!(table_name("2024", Some(&c)), "shop_2024");
    }

    #[test]
    fn two_streams_on_one_table_name_both() {
        let err = check_table_names("shop", ["public.orders", "public_orders"], None).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("`public.orders`") && text.contains("`public_orders`"),
            "{text}"
        );
        assert!(
            text.contains("`public_orders`") && text.contains("shop"),
            "{text}"
        );
        assert!(check_table_names("shop", ["a.b", "a.c", "a.b"], None).is_ok());
    }

    #[test]
    fn the_config_is_strict_and_checked() {
        let c: CatalogConfig = toml::from_str(
            r#"type = "glue"
               database = "raw_shop"
               region = "eu-west-1"
               endpoint = "http://127.0.0.1:5000"
               table_prefix = "shop_""#,
        )
        .unwrap();
        assert_eq!(c.kind, CatalogKind::Glue);
        assert!(c.validate().is_ok());
        assert!(toml::from_str::<CatalogConfig>("type = \"glue\"\ndatabse = \"x\"").is_err());
        assert!(toml::from_str::<CatalogConfig>("type = \"hive\"").is_err());
        let bad = config(Some("Raw-Shop"), None).validate().unwrap_err();
        assert!(
            bad.contains("catalog.database") && bad.contains("raw_shop"),
            "{bad}"
        );
        assert!(config(None, Some("Shop.")).validate().is_err());
    }
}
