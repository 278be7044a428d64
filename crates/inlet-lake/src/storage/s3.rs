//! The lake in an S3 bucket (or an S3-compatible store), with the guarantees of the local
//! directory and no rename:
//!
//! - data files are multipart uploads that stay invisible until completed: staging is an
//!   open upload (its id and part ETags recorded in the state commit), publishing is
//!   `CompleteMultipartUpload`, idempotent (an upload already completed is recognised by
//!   the object being there);
//! - each open upload also has a small marker object under `_inlet/staging/`, so uploads
//!   of a process that died before its commit can be found and aborted without
//!   `ListMultipartUploads`;
//! - state, history and leases use conditional writes (`If-None-Match: *` to create,
//!   `If-Match: <etag>` to replace), so two writers cannot both win.
//!
//! Requests per landed file: create + one per part + complete, plus the marker's put and
//! delete: 4 + parts. Per commit: one history put, one state put.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::{
    Client,
    config::{BehaviorVersion, Credentials, Region, retry::RetryConfig, timeout::TimeoutConfig},
    error::{ProvideErrorMetadata, SdkError},
    primitives::ByteStream,
    types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, StorageClass},
};
use bytes::Bytes;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::{ObjectMeta, Precondition, StagedObject, StagedUpload, Storage, Version};
use crate::{LakeError, layout};

/// Server-side encryption of written objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerSideEncryption {
    /// SSE-S3 (`AES256`).
    S3,
    /// SSE-KMS with this key id (or the bucket's default key when `None`).
    Kms(Option<String>),
}

/// Where and how to reach a bucket.
#[derive(Clone)]
pub struct S3Options {
    /// The bucket.
    pub bucket: String,
    /// Key prefix inside the bucket (no leading or trailing `/`), may be empty.
    pub prefix: String,
    /// Region; from the AWS environment/profile when `None`.
    pub region: Option<String>,
    /// Endpoint of an S3-compatible store.
    pub endpoint: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), for most S3-compatible stores.
    pub path_style: bool,
    /// Explicit credentials; the standard AWS chain (env, profile, web identity, instance
    /// metadata) when `None`.
    pub credentials: Option<(String, SecretString, Option<SecretString>)>,
    /// Server-side encryption.
    pub sse: Option<ServerSideEncryption>,
    /// Storage class of data files (`STANDARD`, `STANDARD_IA`, `INTELLIGENT_TIERING`...).
    pub storage_class: Option<String>,
    /// Multipart part size in bytes (at least 5 MiB).
    pub part_size: usize,
    /// Attempts per request (SDK retries with backoff on 5xx, SlowDown, timeouts).
    pub max_attempts: u32,
}

impl std::fmt::Debug for S3Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Options")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("path_style", &self.path_style)
            .field(
                "credentials",
                &self
                    .credentials
                    .as_ref()
                    .map(|(id, _, _)| format!("{id} / ***")),
            )
            .field("sse", &self.sse)
            .field("storage_class", &self.storage_class)
            .field("part_size", &self.part_size)
            .finish()
    }
}

/// Smallest part S3 accepts (but for the last).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;

impl S3Options {
    /// Options for `s3://bucket/prefix`, everything else default.
    pub fn from_url(url: &str) -> Result<S3Options, String> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| format!("`{url}` is not an s3:// URL"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("`{url}` names no bucket: use s3://BUCKET/PREFIX"));
        }
        Ok(S3Options {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            region: None,
            endpoint: None,
            path_style: false,
            credentials: None,
            sse: None,
            storage_class: None,
            part_size: 8 * 1024 * 1024,
            max_attempts: 5,
        })
    }
}

/// The lake in a bucket.
#[derive(Clone)]
pub struct S3Storage {
    client: Client,
    options: S3Options,
}

impl std::fmt::Debug for S3Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Storage")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// What a staged S3 object records: enough to complete or abort it later.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Staging {
    upload_id: String,
    #[serde(default)]
    parts: Vec<Part>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Part {
    n: i32,
    etag: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    crc32c: Option<String>,
}

fn http_client() -> aws_sdk_s3::config::SharedHttpClient {
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

impl S3Storage {
    /// Build a client for the bucket. Resolves credentials from the AWS chain when none
    /// are given; makes no request (use [`S3Storage::probe`] for that).
    pub async fn connect(options: S3Options) -> Result<S3Storage, LakeError> {
        if options.part_size < MIN_PART_SIZE {
            return Err(LakeError::Invalid(format!(
                "part size {} is below the S3 minimum of 5 MiB",
                options.part_size
            )));
        }
        let retry = RetryConfig::standard()
            .with_max_attempts(options.max_attempts.max(1))
            .with_initial_backoff(Duration::from_millis(200));
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .operation_attempt_timeout(Duration::from_secs(120))
            .build();
        let mut builder = match &options.credentials {
            Some((id, secret, token)) => aws_sdk_s3::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .http_client(http_client())
                .credentials_provider(Credentials::new(
                    id,
                    secret.expose_secret(),
                    token.as_ref().map(|t| t.expose_secret().to_string()),
                    None,
                    "inlet-config",
                ))
                .region(Region::new(
                    options.region.clone().unwrap_or_else(|| "us-east-1".into()),
                )),
            None => {
                let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .http_client(http_client());
                if let Some(r) = &options.region {
                    loader = loader.region(Region::new(r.clone()));
                }
                let sdk = loader.load().await;
                let mut b = aws_sdk_s3::config::Builder::from(&sdk);
                if sdk.region().is_none() {
                    b = b.region(Region::new("us-east-1"));
                }
                b
            }
        };
        builder = builder
            .retry_config(retry)
            .timeout_config(timeouts)
            .force_path_style(options.path_style);
        if let Some(endpoint) = &options.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        Ok(S3Storage {
            client: Client::from_conf(builder.build()),
            options,
        })
    }

    fn full_key(&self, key: &str) -> String {
        if self.options.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.options.prefix)
        }
    }

    fn strip(&self, full: &str) -> Option<String> {
        if self.options.prefix.is_empty() {
            Some(full.to_string())
        } else {
            full.strip_prefix(&format!("{}/", self.options.prefix))
                .map(str::to_string)
        }
    }

    fn marker_key(final_key: &str) -> String {
        format!("{}/staging/{final_key}.upload", layout::META)
    }

    fn error<E: ProvideErrorMetadata + std::error::Error + 'static>(
        &self,
        op: &str,
        key: &str,
        e: SdkError<E>,
    ) -> LakeError {
        let status = e.raw_response().map(|r| r.status().as_u16());
        let code = e.code().map(str::to_string);
        let bucket = &self.options.bucket;
        let resource = format!("s3://{bucket}/{}", self.full_key(key));
        let (message, transient) = match (code.as_deref(), status) {
            (Some("PreconditionFailed" | "ConditionalRequestConflict"), _) | (_, Some(412)) => {
                return LakeError::Conflict {
                    resource,
                    message: "a conditional write lost to another writer".into(),
                };
            }
            (Some("NoSuchBucket"), _) => (
                format!("bucket `{bucket}` does not exist (create it, or fix the destination url)"),
                false,
            ),
            (Some("InvalidAccessKeyId" | "NotSignedUp"), _) => (
                "the access key id is not known to the store (fix the credentials)".to_string(),
                false,
            ),
            (Some("SignatureDoesNotMatch"), _) => (
                "the secret access key is wrong (the request signature was refused)".to_string(),
                false,
            ),
            (Some("AccessDenied"), _) | (None, Some(403)) => (
                format!(
                    "access denied for {op}: grant s3:GetObject, s3:PutObject, s3:DeleteObject, s3:ListBucket and s3:AbortMultipartUpload on the bucket and prefix"
                ),
                false,
            ),
            (
                Some(
                    "PermanentRedirect"
                    | "AuthorizationHeaderMalformed"
                    | "IllegalLocationConstraintException",
                ),
                _,
            )
            | (None, Some(301)) => (
                format!(
                    "bucket `{bucket}` is in another region than the one configured: set `region`"
                ),
                false,
            ),
            (Some("SlowDown" | "RequestTimeout" | "InternalError" | "ServiceUnavailable"), _) => (
                format!("{op} failed after retries: {}", code.unwrap_or_default()),
                true,
            ),
            (_, Some(s)) if s >= 500 => (format!("{op} failed after retries: HTTP {s}"), true),
            _ => match &e {
                SdkError::TimeoutError(_) => (format!("{op} timed out after retries"), true),
                SdkError::DispatchFailure(_) => (
                    format!(
                        "{op}: cannot reach the store{}: {}",
                        self.options
                            .endpoint
                            .as_ref()
                            .map(|e| format!(" at {e}"))
                            .unwrap_or_default(),
                        aws_smithy_types::error::display::DisplayErrorContext(&e)
                    ),
                    true,
                ),
                other => (
                    format!(
                        "{op}: {}",
                        aws_smithy_types::error::display::DisplayErrorContext(other)
                    ),
                    status.is_none_or(|s| s >= 500 || s == 429),
                ),
            },
        };
        LakeError::Remote {
            resource,
            message,
            transient,
        }
    }
}

fn is_not_found<E: ProvideErrorMetadata>(e: &SdkError<E>) -> bool {
    matches!(e.code(), Some("NoSuchKey" | "NotFound"))
        || e.raw_response().is_some_and(|r| r.status().as_u16() == 404)
            && !matches!(e.code(), Some("NoSuchBucket"))
}

#[async_trait]
impl Storage for S3Storage {
    fn url(&self) -> String {
        if self.options.prefix.is_empty() {
            format!("s3://{}", self.options.bucket)
        } else {
            format!("s3://{}/{}", self.options.bucket, self.options.prefix)
        }
    }

    async fn get(&self, key: &str) -> Result<Option<(Bytes, Version)>, LakeError> {
        let result = self
            .client
            .get_object()
            .bucket(&self.options.bucket)
            .key(self.full_key(key))
            .send()
            .await;
        match result {
            Ok(out) => {
                let etag = out.e_tag().unwrap_or_default().to_string();
                let body = out.body.collect().await.map_err(|e| LakeError::Remote {
                    resource: format!("s3://{}/{}", self.options.bucket, self.full_key(key)),
                    message: format!("reading the object: {e}"),
                    transient: true,
                })?;
                Ok(Some((body.into_bytes(), Version(etag))))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(self.error("GetObject", key, e)),
        }
    }

    async fn put(&self, key: &str, bytes: Bytes) -> Result<Version, LakeError> {
        self.put_object(key, bytes, None).await
    }

    async fn put_if(
        &self,
        key: &str,
        bytes: Bytes,
        condition: Precondition,
    ) -> Result<Version, LakeError> {
        self.put_object(key, bytes, Some(condition)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, LakeError> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.options.bucket)
            .prefix(self.full_key(prefix))
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error("ListObjectsV2", prefix, e))?;
            for o in page.contents() {
                if let Some(key) = o.key().and_then(|k| self.strip(k)) {
                    out.push(ObjectMeta {
                        key,
                        size: o.size().unwrap_or(0).max(0) as u64,
                    });
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn delete(&self, key: &str) -> Result<(), LakeError> {
        match self
            .client
            .delete_object()
            .bucket(&self.options.bucket)
            .key(self.full_key(key))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(self.error("DeleteObject", key, e)),
        }
    }

    async fn stage(&self, final_key: &str) -> Result<Box<dyn StagedUpload>, LakeError> {
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.options.bucket)
            .key(self.full_key(final_key))
            .checksum_algorithm(ChecksumAlgorithm::Crc32C)
            .set_server_side_encryption(self.sse())
            .set_ssekms_key_id(self.kms_key())
            .set_storage_class(
                self.options
                    .storage_class
                    .as_deref()
                    .map(StorageClass::from),
            )
            .send()
            .await
            .map_err(|e| self.error("CreateMultipartUpload", final_key, e))?;
        let upload_id = out.upload_id().unwrap_or_default().to_string();
        let staging = Staging {
            upload_id,
            parts: Vec::new(),
        };
        let marker = serde_json::to_vec(&staging).map_err(|e| LakeError::Invalid(e.to_string()))?;
        self.put(&Self::marker_key(final_key), Bytes::from(marker))
            .await?;
        Ok(Box::new(S3Upload {
            storage: self.clone(),
            final_key: final_key.to_string(),
            staging,
            buffer: Vec::with_capacity(self.options.part_size),
            size: 0,
        }))
    }

    async fn publish(&self, staged: &StagedObject) -> Result<(), LakeError> {
        let staging: Staging =
            serde_json::from_str(&staged.staging).map_err(|e| LakeError::Corrupt {
                resource: staged.final_key.clone(),
                message: format!("staging record: {e}"),
            })?;
        let parts = staging
            .parts
            .iter()
            .map(|p| {
                CompletedPart::builder()
                    .part_number(p.n)
                    .e_tag(&p.etag)
                    .set_checksum_crc32_c(p.crc32c.clone())
                    .build()
            })
            .collect();
        let result = self
            .client
            .complete_multipart_upload()
            .bucket(&self.options.bucket)
            .key(self.full_key(&staged.final_key))
            .upload_id(&staging.upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await;
        if let Err(e) = result {
            // Completed by an earlier attempt: the upload is gone (stores answer NoSuchUpload
            // or AccessDenied for an unknown upload id) and the object is there, whole. A
            // completion still in flight (its process died mid-request) may need a moment.
            let mut there = self.head(&staged.final_key).await?;
            for wait_ms in [200, 1000, 3000] {
                if there == Some(staged.size) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(wait_ms)).await;
                there = self.head(&staged.final_key).await?;
            }
            if there != Some(staged.size) {
                let code = e.code().unwrap_or("error").to_string();
                return Err(LakeError::Remote {
                    resource: format!(
                        "s3://{}/{}",
                        self.options.bucket,
                        self.full_key(&staged.final_key)
                    ),
                    message: format!(
                        "cannot complete its multipart upload ({code}) and the object is not there: was the upload aborted by a lifecycle rule or another process?"
                    ),
                    transient: true,
                });
            }
        }
        crate::failpoint("after-publish-one");
        self.delete(&Self::marker_key(&staged.final_key)).await
    }

    async fn discard(&self, staged: &StagedObject) -> Result<(), LakeError> {
        if let Ok(staging) = serde_json::from_str::<Staging>(&staged.staging) {
            let result = self
                .client
                .abort_multipart_upload()
                .bucket(&self.options.bucket)
                .key(self.full_key(&staged.final_key))
                .upload_id(&staging.upload_id)
                .send()
                .await;
            if let Err(e) = result
                && !matches!(e.code(), Some("NoSuchUpload"))
                && e.raw_response().is_none_or(|r| r.status().as_u16() != 404)
            {
                return Err(self.error("AbortMultipartUpload", &staged.final_key, e));
            }
        }
        self.delete(&Self::marker_key(&staged.final_key)).await
    }

    async fn probe(&self) -> Result<(), LakeError> {
        // The bucket first: some stores create a missing bucket on a first put. Other
        // HEAD failures carry no error code; the put below says precisely what is wrong.
        if let Err(e) = self
            .client
            .head_bucket()
            .bucket(&self.options.bucket)
            .send()
            .await
        {
            match e.raw_response().map(|r| r.status().as_u16()) {
                Some(404) => {
                    return Err(LakeError::Remote {
                        resource: format!("s3://{}", self.options.bucket),
                        message: format!(
                            "bucket `{}` does not exist (create it, or fix the destination url)",
                            self.options.bucket
                        ),
                        transient: false,
                    });
                }
                Some(301) => return Err(self.error("HeadBucket", "", e)),
                _ if matches!(e, SdkError::DispatchFailure(_) | SdkError::TimeoutError(_)) => {
                    return Err(self.error("HeadBucket", "", e));
                }
                _ => {}
            }
        }
        let key = format!("{}/probe/{}", layout::META, uuid::Uuid::now_v7().simple());
        self.put(&key, Bytes::from_static(b"inlet probe")).await?;
        self.get(&key).await?;
        self.delete(&key).await
    }

    async fn list_staged(&self, source: &str) -> Result<Vec<StagedObject>, LakeError> {
        let prefix = format!("{}/staging/{source}/", layout::META);
        let mut out = Vec::new();
        for o in self.list(&prefix).await? {
            let Some(final_key) = o
                .key
                .strip_prefix(&format!("{}/staging/", layout::META))
                .and_then(|k| k.strip_suffix(".upload"))
            else {
                continue;
            };
            let Some((bytes, _)) = self.get(&o.key).await? else {
                continue;
            };
            out.push(StagedObject {
                final_key: final_key.to_string(),
                staging: String::from_utf8_lossy(&bytes).into_owned(),
                size: 0,
                rows: 0,
            });
        }
        Ok(out)
    }
}

impl S3Storage {
    /// PutObject, with `If-None-Match: *` or `If-Match` when a condition is given.
    async fn put_object(
        &self,
        key: &str,
        bytes: Bytes,
        condition: Option<Precondition>,
    ) -> Result<Version, LakeError> {
        let req = self
            .client
            .put_object()
            .bucket(&self.options.bucket)
            .key(self.full_key(key))
            .body(ByteStream::from(bytes))
            .set_server_side_encryption(self.sse())
            .set_ssekms_key_id(self.kms_key());
        let (req, op) = match condition {
            None => (req, "PutObject"),
            Some(Precondition::Absent) => (req.if_none_match("*"), "PutObject (conditional)"),
            Some(Precondition::Matches(v)) => (req.if_match(v.0), "PutObject (conditional)"),
        };
        let out = req.send().await.map_err(|e| self.error(op, key, e))?;
        Ok(Version(out.e_tag().unwrap_or_default().to_string()))
    }

    fn sse(&self) -> Option<aws_sdk_s3::types::ServerSideEncryption> {
        match &self.options.sse {
            Some(ServerSideEncryption::S3) => Some(aws_sdk_s3::types::ServerSideEncryption::Aes256),
            Some(ServerSideEncryption::Kms(_)) => {
                Some(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
            }
            None => None,
        }
    }

    fn kms_key(&self) -> Option<String> {
        match &self.options.sse {
            Some(ServerSideEncryption::Kms(k)) => k.clone(),
            _ => None,
        }
    }

    /// The size of an object, `None` when absent.
    async fn head(&self, key: &str) -> Result<Option<u64>, LakeError> {
        match self
            .client
            .head_object()
            .bucket(&self.options.bucket)
            .key(self.full_key(key))
            .send()
            .await
        {
            Ok(out) => Ok(Some(out.content_length().unwrap_or(0).max(0) as u64)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(self.error("HeadObject", key, e)),
        }
    }

    async fn upload_part(
        &self,
        key: &str,
        staging: &mut Staging,
        bytes: Vec<u8>,
    ) -> Result<(), LakeError> {
        let n = staging.parts.len() as i32 + 1;
        let out = self
            .client
            .upload_part()
            .bucket(&self.options.bucket)
            .key(self.full_key(key))
            .upload_id(&staging.upload_id)
            .part_number(n)
            .checksum_algorithm(ChecksumAlgorithm::Crc32C)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| self.error("UploadPart", key, e))?;
        staging.parts.push(Part {
            n,
            etag: out.e_tag().unwrap_or_default().to_string(),
            crc32c: out.checksum_crc32_c().map(str::to_string),
        });
        Ok(())
    }
}

/// A multipart upload in progress: at most one part is buffered.
struct S3Upload {
    storage: S3Storage,
    final_key: String,
    staging: Staging,
    buffer: Vec<u8>,
    size: u64,
}

impl std::fmt::Debug for S3Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Upload")
            .field("final_key", &self.final_key)
            .field("parts", &self.staging.parts.len())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl StagedUpload for S3Upload {
    async fn write(&mut self, bytes: Bytes) -> Result<(), LakeError> {
        self.size += bytes.len() as u64;
        let part_size = self.storage.options.part_size;
        let mut rest: &[u8] = &bytes;
        while !rest.is_empty() {
            let take = (part_size - self.buffer.len()).min(rest.len());
            self.buffer.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.buffer.len() == part_size {
                let part = std::mem::replace(&mut self.buffer, Vec::with_capacity(part_size));
                self.storage
                    .upload_part(&self.final_key, &mut self.staging, part)
                    .await?;
            }
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<StagedObject, LakeError> {
        if !self.buffer.is_empty() || self.staging.parts.is_empty() {
            let last = std::mem::take(&mut self.buffer);
            self.storage
                .upload_part(&self.final_key, &mut self.staging, last)
                .await?;
        }
        Ok(StagedObject {
            final_key: self.final_key.clone(),
            staging: serde_json::to_string(&self.staging)
                .map_err(|e| LakeError::Invalid(e.to_string()))?,
            size: self.size,
            rows: 0,
        })
    }

    async fn abort(self: Box<Self>) {
        let staged = StagedObject {
            final_key: self.final_key.clone(),
            staging: serde_json::to_string(&self.staging).unwrap_or_default(),
            size: 0,
            rows: 0,
        };
        if let Err(e) = self.storage.discard(&staged).await {
            tracing::warn!(key = %self.final_key, error = %e, "could not abort a multipart upload; a bucket lifecycle rule (AbortIncompleteMultipartUpload) cleans it up");
        }
    }
}
