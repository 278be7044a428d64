//! A small client of the AWS Glue Data Catalog: the eight operations registration needs,
//! over AWS JSON 1.1 (`POST /`, `X-Amz-Target: AWSGlue.<Op>`), signed with SigV4
//! (`aws-sigv4`), credentials from the destination's keys or the AWS chain (`aws-config`,
//! as the S3 backend resolves them), sent with `reqwest` (rustls).
//!
//! Why not `aws-sdk-glue`: it generates some 250 operations and their types, one more
//! crate of the size of `aws-sdk-s3` to compile in every debug build, for eight calls whose
//! wire format is plain JSON. This client is a few hundred lines on crates already in the
//! tree.
//!
//! Every request is retried with exponential backoff and jitter on throttling
//! (`ThrottlingException`, `ConcurrentModificationException`, HTTP 429), on 5xx and on
//! network errors, up to [`GlueOptions::max_attempts`]. Errors are [`GlueError`]s naming the
//! operation and the database or table; a denied call names the IAM action to grant.
//! Secrets appear in no message and no `Debug` output.

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime},
};

use aws_credential_types::{
    Credentials,
    provider::{ProvideCredentials, SharedCredentialsProvider},
};
use aws_sigv4::{
    http_request::{SignableBody, SignableRequest, SigningSettings, sign},
    sign::v4,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Value, json};

/// How to reach the Glue Data Catalog.
#[derive(Clone)]
pub struct GlueOptions {
    /// Region (`catalog.region`, else the destination's); from the AWS environment or
    /// profile when `None`, else `us-east-1`.
    pub region: Option<String>,
    /// Endpoint override (`catalog.endpoint`, for tests and private endpoints); else
    /// `https://glue.<region>.amazonaws.com`.
    pub endpoint: Option<String>,
    /// Explicit keys (the destination's S3 keys): access key id, secret, session token.
    /// The AWS chain (env, profile, web identity, instance metadata) when `None`.
    pub credentials: Option<(String, SecretString, Option<SecretString>)>,
    /// Attempts per request, at least 1.
    pub max_attempts: u32,
    /// The first backoff; doubled per attempt, with jitter.
    pub initial_backoff: Duration,
}

impl Default for GlueOptions {
    fn default() -> Self {
        GlueOptions {
            region: None,
            endpoint: None,
            credentials: None,
            max_attempts: 6,
            initial_backoff: Duration::from_millis(200),
        }
    }
}

impl std::fmt::Debug for GlueOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlueOptions")
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field(
                "credentials",
                &self
                    .credentials
                    .as_ref()
                    .map(|(id, _, _)| format!("{id} / ***")),
            )
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

/// A failed Glue call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GlueError {
    /// The credentials may not call the operation.
    #[error(
        "Glue {operation} on {resource} was denied: grant the IAM action `{action}` to the credentials inlet uses ({message})"
    )]
    AccessDenied {
        /// The operation, e.g. `CreateTable`.
        operation: &'static str,
        /// The database or `database.table`.
        resource: String,
        /// The IAM action to grant, e.g. `glue:CreateTable`.
        action: String,
        /// What Glue said.
        message: String,
    },
    /// Glue answered with an error (after the retries, when it was transient).
    #[error("Glue {operation} on {resource} failed: {code}: {message}{}", retried(*attempts))]
    Service {
        /// The operation.
        operation: &'static str,
        /// The database or `database.table`.
        resource: String,
        /// Glue's error code (`__type`), e.g. `InvalidInputException`, or the HTTP status.
        code: String,
        /// Glue's message.
        message: String,
        /// Whether another try later may succeed (throttling, 5xx).
        transient: bool,
        /// The attempts made.
        attempts: u32,
    },
    /// No answer (connection refused, timeout, TLS).
    #[error("Glue {operation} on {resource}: no answer from {endpoint}: {message}{}", retried(*attempts))]
    Network {
        /// The operation.
        operation: &'static str,
        /// The database or `database.table`.
        resource: String,
        /// The endpoint called.
        endpoint: String,
        /// What failed.
        message: String,
        /// The attempts made.
        attempts: u32,
    },
    /// No credentials could be resolved or the request could not be signed.
    #[error(
        "Glue credentials: {0} (set the destination's access keys or configure the AWS chain: env, profile, role)"
    )]
    Credentials(String),
    /// Glue's answer was not what the API documents.
    #[error("Glue {operation} on {resource}: unexpected answer: {message}")]
    Decode {
        /// The operation.
        operation: &'static str,
        /// The database or `database.table`.
        resource: String,
        /// What did not parse.
        message: String,
    },
}

fn retried(attempts: u32) -> String {
    if attempts > 1 {
        format!(" (after {attempts} attempts)")
    } else {
        String::new()
    }
}

impl GlueError {
    /// Whether a later try may succeed without a change of configuration.
    pub fn is_transient(&self) -> bool {
        match self {
            GlueError::Service { transient, .. } => *transient,
            GlueError::Network { .. } => true,
            _ => false,
        }
    }

    /// The IAM action a denied call needs, if this is a denial.
    pub fn denied_action(&self) -> Option<&str> {
        match self {
            GlueError::AccessDenied { action, .. } => Some(action),
            _ => None,
        }
    }
}

/// A column as Glue stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GlueColumn {
    /// Column name.
    pub name: String,
    /// Hive type string, e.g. `decimal(12,2)`.
    #[serde(rename = "Type", default)]
    pub ty: String,
    /// Comment (inlet writes the source type, e.g. `pg_type=numeric(12,2)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// The SerDe of a table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GlueSerde {
    /// The SerDe class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serialization_library: Option<String>,
    /// SerDe parameters.
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
}

/// Where and how a table's files are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GlueStorage {
    /// The data columns.
    #[serde(default)]
    pub columns: Vec<GlueColumn>,
    /// The table's location (`s3://bucket/prefix/source/stream/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The input format class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_format: Option<String>,
    /// The output format class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_format: Option<String>,
    /// The SerDe.
    #[serde(default)]
    pub serde_info: GlueSerde,
}

/// A table as sent to Glue (`TableInput`) and read back (`Table`, with `VersionId`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GlueTable {
    /// Table name.
    pub name: String,
    /// The database (read back only).
    #[serde(default, skip_serializing)]
    pub database_name: Option<String>,
    /// `EXTERNAL_TABLE` for inlet's tables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_type: Option<String>,
    /// Columns, location, formats, SerDe.
    #[serde(default)]
    pub storage_descriptor: GlueStorage,
    /// Partition keys.
    #[serde(default)]
    pub partition_keys: Vec<GlueColumn>,
    /// Table parameters (classification, projection, inlet's).
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    /// The current version (read back only).
    #[serde(default, skip_serializing)]
    pub version_id: Option<String>,
}

/// A client of one region's Glue Data Catalog.
#[derive(Clone)]
pub struct GlueClient {
    http: reqwest::Client,
    endpoint: String,
    region: String,
    credentials: SharedCredentialsProvider,
    options: GlueOptions,
}

impl std::fmt::Debug for GlueClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlueClient")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// The error body of AWS JSON 1.1.
#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "__type", default)]
    kind: String,
    #[serde(alias = "Message", default)]
    message: String,
}

impl GlueClient {
    /// A client for `options`: resolves the region and the credential chain, makes no
    /// request.
    pub async fn connect(options: GlueOptions) -> Result<GlueClient, GlueError> {
        let (region, credentials) = match &options.credentials {
            Some((id, secret, token)) => (
                options.region.clone(),
                SharedCredentialsProvider::new(Credentials::new(
                    id,
                    secret.expose_secret(),
                    token.as_ref().map(|t| t.expose_secret().to_string()),
                    None,
                    "inlet-config",
                )),
            ),
            #[cfg(not(feature = "aws-chain"))]
            None => {
                return Err(GlueError::Credentials(
                    "this inlet was built without the AWS SDK (the `s3` feature of inlet-cli), so only keys given in the destination (`access_key_id`, `secret_access_key`) reach Glue: rebuild with default features to use the AWS credential chain".into(),
                ));
            }
            #[cfg(feature = "aws-chain")]
            None => {
                let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
                if let Some(r) = &options.region {
                    loader = loader.region(aws_config::Region::new(r.clone()));
                }
                let sdk = loader.load().await;
                let provider = sdk.credentials_provider().ok_or_else(|| {
                    GlueError::Credentials("the AWS chain has no credentials provider".into())
                })?;
                (
                    options
                        .region
                        .clone()
                        .or_else(|| sdk.region().map(|r| r.to_string())),
                    provider,
                )
            }
        };
        let region = region.unwrap_or_else(|| "us-east-1".to_string());
        let endpoint = options
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://glue.{region}.amazonaws.com"));
        let endpoint = format!("{}/", endpoint.trim_end_matches('/'));
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| GlueError::Network {
                operation: "connect",
                resource: String::new(),
                endpoint: endpoint.clone(),
                message: e.to_string(),
                attempts: 0,
            })?;
        Ok(GlueClient {
            http,
            endpoint,
            region,
            credentials,
            options,
        })
    }

    /// The region calls go to.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The database `name`, `None` when it does not exist.
    pub async fn get_database(&self, name: &str) -> Result<Option<Value>, GlueError> {
        let r = self
            .call_opt("GetDatabase", name, json!({ "Name": name }))
            .await?;
        Ok(r.and_then(|mut v| v.get_mut("Database").map(Value::take)))
    }

    /// Create the database `name`; one that already exists (a concurrent creator) is fine.
    pub async fn create_database(&self, name: &str, description: &str) -> Result<(), GlueError> {
        let body = json!({ "DatabaseInput": {
            "Name": name,
            "Description": description,
            "Parameters": { "created_by": "inlet" },
        }});
        match self.call("CreateDatabase", name, body).await {
            Ok(_) => Ok(()),
            Err(GlueError::Service { code, .. }) if code == "AlreadyExistsException" => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The table `database.name`, `None` when it (or its database) does not exist.
    pub async fn get_table(
        &self,
        database: &str,
        name: &str,
    ) -> Result<Option<GlueTable>, GlueError> {
        let resource = format!("{database}.{name}");
        let Some(v) = self
            .call_opt(
                "GetTable",
                &resource,
                json!({ "DatabaseName": database, "Name": name }),
            )
            .await?
        else {
            return Ok(None);
        };
        decode_field("GetTable", &resource, v, "Table").map(Some)
    }

    /// Every table of `database` (all pages); empty when the database does not exist.
    pub async fn get_tables(&self, database: &str) -> Result<Vec<GlueTable>, GlueError> {
        self.pages(
            "GetTables",
            database,
            json!({ "DatabaseName": database }),
            "TableList",
        )
        .await
    }

    /// Create a table in `database`.
    pub async fn create_table(&self, database: &str, table: &GlueTable) -> Result<(), GlueError> {
        let resource = format!("{database}.{}", table.name);
        self.call(
            "CreateTable",
            &resource,
            json!({ "DatabaseName": database, "TableInput": table }),
        )
        .await
        .map(drop)
    }

    /// Replace a table's definition in `database` (Glue keeps the old one as a version).
    pub async fn update_table(&self, database: &str, table: &GlueTable) -> Result<(), GlueError> {
        let resource = format!("{database}.{}", table.name);
        self.call(
            "UpdateTable",
            &resource,
            json!({ "DatabaseName": database, "TableInput": table }),
        )
        .await
        .map(drop)
    }

    /// Delete the table `database.name`; one already gone is fine.
    pub async fn delete_table(&self, database: &str, name: &str) -> Result<(), GlueError> {
        let resource = format!("{database}.{name}");
        self.call_opt(
            "DeleteTable",
            &resource,
            json!({ "DatabaseName": database, "Name": name }),
        )
        .await
        .map(drop)
    }

    /// The versions Glue keeps of `database.name` (all pages), each a table definition.
    pub async fn get_table_versions(
        &self,
        database: &str,
        name: &str,
    ) -> Result<Vec<GlueTable>, GlueError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Version {
            table: GlueTable,
        }
        let resource = format!("{database}.{name}");
        let versions: Vec<Version> = self
            .pages(
                "GetTableVersions",
                &resource,
                json!({ "DatabaseName": database, "TableName": name }),
                "TableVersions",
            )
            .await?;
        Ok(versions.into_iter().map(|v| v.table).collect())
    }

    async fn pages<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        resource: &str,
        mut body: Value,
        field: &str,
    ) -> Result<Vec<T>, GlueError> {
        let mut out = Vec::new();
        loop {
            let Some(mut page) = self.call_opt(operation, resource, body.clone()).await? else {
                return Ok(out);
            };
            let token = page
                .get("NextToken")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            let items: Vec<T> =
                decode_field(operation, resource, page.take(), field).or_else(|e| {
                    // An empty page may leave the list out.
                    if page.get(field).is_none() {
                        Ok(Vec::new())
                    } else {
                        Err(e)
                    }
                })?;
            out.extend(items);
            match token {
                Some(t) => body["NextToken"] = Value::String(t),
                None => return Ok(out),
            }
        }
    }

    /// [`GlueClient::call`], with `EntityNotFoundException` as `None`.
    async fn call_opt(
        &self,
        operation: &'static str,
        resource: &str,
        body: Value,
    ) -> Result<Option<Value>, GlueError> {
        match self.call(operation, resource, body).await {
            Ok(v) => Ok(Some(v)),
            Err(GlueError::Service { code, .. }) if code == "EntityNotFoundException" => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One operation, retried while the failure is transient.
    async fn call(
        &self,
        operation: &'static str,
        resource: &str,
        body: Value,
    ) -> Result<Value, GlueError> {
        let body = serde_json::to_vec(&body).map_err(|e| GlueError::Decode {
            operation,
            resource: resource.to_string(),
            message: e.to_string(),
        })?;
        let attempts = self.options.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            match self.send(operation, resource, &body, attempt).await {
                Err(e) if e.is_transient() && attempt < attempts => {
                    let wait = backoff(self.options.initial_backoff, attempt);
                    tracing::debug!(operation, resource, attempt, ?wait, error = %e, "Glue call failed, retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                r => return r,
            }
        }
    }

    async fn send(
        &self,
        operation: &'static str,
        resource: &str,
        body: &[u8],
        attempt: u32,
    ) -> Result<Value, GlueError> {
        let target = format!("AWSGlue.{operation}");
        let content_type = "application/x-amz-json-1.1";
        let creds = self
            .credentials
            .provide_credentials()
            .await
            .map_err(|e| GlueError::Credentials(e.to_string()))?;
        let identity = creds.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("glue")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| GlueError::Credentials(e.to_string()))?
            .into();
        let headers = [("content-type", content_type), ("x-amz-target", &target)];
        let signable = SignableRequest::new(
            "POST",
            self.endpoint.as_str(),
            headers.iter().copied(),
            SignableBody::Bytes(body),
        )
        .map_err(|e| GlueError::Credentials(e.to_string()))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| GlueError::Credentials(e.to_string()))?
            .into_parts();
        let mut request = self
            .http
            .post(&self.endpoint)
            .header("content-type", content_type)
            .header("x-amz-target", &target)
            .body(body.to_vec());
        for (name, value) in instructions.headers() {
            request = request.header(name, value);
        }
        let network = |message: String| GlueError::Network {
            operation,
            resource: resource.to_string(),
            endpoint: self.endpoint.clone(),
            message,
            attempts: attempt,
        };
        let response = request
            .send()
            .await
            .map_err(|e| network(e.without_url().to_string()))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| network(e.without_url().to_string()))?;
        if status.is_success() {
            if bytes.is_empty() {
                return Ok(Value::Object(Default::default()));
            }
            return serde_json::from_slice(&bytes).map_err(|e| GlueError::Decode {
                operation,
                resource: resource.to_string(),
                message: e.to_string(),
            });
        }
        Err(service_error(
            operation,
            resource,
            status.as_u16(),
            &bytes,
            attempt,
        ))
    }
}

/// Glue's error answer as a [`GlueError`]. AWS answers JSON with `__type`
/// (`com.amazonaws...#AccessDeniedException` or the bare name); moto answers a denial
/// with 403 and an XML body, so a 403 is a denial whatever its body.
fn service_error(
    operation: &'static str,
    resource: &str,
    status: u16,
    body: &[u8],
    attempts: u32,
) -> GlueError {
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let (code, message) = match parsed {
        Some(b) if !b.kind.is_empty() => {
            // `com.amazonaws.glue#ThrottlingException` or `ThrottlingException:http://...`.
            let kind = b.kind.split(':').next().unwrap_or_default();
            let code = kind.rsplit('#').next().unwrap_or(kind);
            (code.to_string(), b.message)
        }
        _ => (
            format!("HTTP {status}"),
            xml_message(body).unwrap_or_else(|| String::from_utf8_lossy(body).into_owned()),
        ),
    };
    if status == 403 || code == "AccessDeniedException" || code == "AccessDenied" {
        return GlueError::AccessDenied {
            operation,
            resource: resource.to_string(),
            action: format!("glue:{operation}"),
            message,
        };
    }
    let transient = status >= 500
        || status == 429
        || matches!(
            code.as_str(),
            "ThrottlingException"
                | "ConcurrentModificationException"
                | "InternalServiceException"
                | "OperationTimeoutException"
        );
    GlueError::Service {
        operation,
        resource: resource.to_string(),
        code,
        message,
        transient,
        attempts,
    }
}

/// The `<Message>` of an XML error body.
fn xml_message(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find("<Message>")? + "<Message>".len();
    let end = text[start..].find("</Message>")? + start;
    Some(text[start..end].to_string())
}

fn decode_field<T: DeserializeOwned>(
    operation: &'static str,
    resource: &str,
    mut v: Value,
    field: &str,
) -> Result<T, GlueError> {
    let decode = |message: String| GlueError::Decode {
        operation,
        resource: resource.to_string(),
        message,
    };
    let inner = v
        .get_mut(field)
        .map(Value::take)
        .ok_or_else(|| decode(format!("no `{field}` in the answer")))?;
    serde_json::from_value(inner).map_err(|e| decode(format!("`{field}`: {e}")))
}

/// `initial * 2^(attempt-1)`, capped at 20 s, plus up to half of it again as jitter.
fn backoff(initial: Duration, attempt: u32) -> Duration {
    let base = initial
        .saturating_mul(1 << (attempt - 1).min(10))
        .min(Duration::from_secs(20));
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let jitter = base.mul_f64(f64::from(nanos % 1000) / 2000.0);
    base + jitter
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_denial_names_the_action_whatever_the_body() {
        let json = br#"{"__type":"AccessDeniedException","Message":"User: arn:aws:iam::1:user/x is not authorized to perform: glue:CreateTable"}"#;
        let e = service_error("CreateTable", "raw.orders", 400, json, 1);
        assert_eq!(e.denied_action(), Some("glue:CreateTable"));
        assert!(
            e.to_string()
                .contains("grant the IAM action `glue:CreateTable`")
        );
        assert!(e.to_string().contains("raw.orders"));
        let xml = b"<ErrorResponse><Errors><Error><Code>AccessDenied</Code><Message>not authorized to perform: glue:GetTable</Message></Error></Errors></ErrorResponse>";
        let e = service_error("GetTable", "raw.orders", 403, xml, 1);
        assert_eq!(e.denied_action(), Some("glue:GetTable"));
        assert!(
            e.to_string()
                .contains("not authorized to perform: glue:GetTable")
        );
    }

    #[test]
    fn throttling_and_5xx_are_transient_other_errors_are_not() {
        let throttled =
            br#"{"__type":"com.amazonaws.glue#ThrottlingException","Message":"Rate exceeded"}"#;
        let e = service_error("GetTable", "d.t", 400, throttled, 3);
        assert!(e.is_transient());
        assert!(e.to_string().contains("ThrottlingException"), "{e}");
        assert!(e.to_string().contains("after 3 attempts"), "{e}");
        assert!(service_error("GetTable", "d.t", 503, b"", 1).is_transient());
        let invalid = br#"{"__type":"InvalidInputException","message":"bad type"}"#;
        let e = service_error("CreateTable", "d.t", 400, invalid, 1);
        assert!(!e.is_transient());
        assert!(e.to_string().contains("bad type"), "{e}");
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let b1 = backoff(Duration::from_millis(100), 1);
        let b3 = backoff(Duration::from_millis(100), 3);
        assert!(b1 >= Duration::from_millis(100) && b1 <= Duration::from_millis(150));
        assert!(b3 >= Duration::from_millis(400) && b3 <= Duration::from_millis(600));
        assert!(backoff(Duration::from_secs(1), 30) <= Duration::from_secs(30));
    }

    #[test]
    fn options_debug_hides_the_secret() {
        let o = GlueOptions {
            credentials: Some(("AKIDX".into(), SecretString::from("s3cr3t"), None)),
            ..GlueOptions::default()
        };
        let d = format!("{o:?}");
        assert!(d.contains("AKIDX") && !d.contains("s3cr3t"), "{d}");
    }

    #[test]
    fn a_table_round_trips_through_glue_json() {
        let answer = json!({
            "Name": "orders", "DatabaseName": "raw", "VersionId": "2",
            "StorageDescriptor": {
                "Columns": [{"Name": "id", "Type": "bigint", "Comment": "pg_type=int8"}],
                "Location": "s3://b/raw/pg/orders/",
                "SerdeInfo": {"SerializationLibrary": "x"}
            },
            "PartitionKeys": [{"Name": "extracted_at", "Type": "date"}],
            "Parameters": {"classification": "parquet"},
            "CreateTime": 1.7e9
        });
        let t: GlueTable = serde_json::from_value(answer).expect("decodes");
        assert_eq!(t.version_id.as_deref(), Some("2"));
        assert_eq!(
            t.storage_descriptor.columns[0].comment.as_deref(),
            Some("pg_type=int8")
        );
        let sent = serde_json::to_value(&t).expect("encodes");
        assert!(sent.get("VersionId").is_none() && sent.get("DatabaseName").is_none());
        assert_eq!(sent["PartitionKeys"][0]["Type"], "date");
    }
}
