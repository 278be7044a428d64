//! Storage backends: a flat key space under a root, with atomic replace, conditional
//! writes, and staged uploads that become visible only when published.

use std::fmt::Debug;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::LakeError;

mod local;
#[cfg(feature = "s3")]
pub mod s3;

pub use local::LocalStorage;
#[cfg(feature = "s3")]
pub use s3::{S3Options, S3Storage, ServerSideEncryption};

/// An opaque object version (an ETag on S3, a content digest on disk).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version(pub String);

/// The condition of a conditional write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// The object must not exist (`If-None-Match: *`).
    Absent,
    /// The object must be at this version (`If-Match`).
    Matches(Version),
}

/// A listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Key relative to the root, `/`-separated.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
}

/// A finished upload that is durable but not yet visible under its final key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedObject {
    /// Where it will be visible.
    pub final_key: String,
    /// Backend handle: a staging key on disk, an upload id on S3.
    pub staging: String,
    /// Size in bytes.
    pub size: u64,
    /// Rows it holds (data files), for reports.
    #[serde(default)]
    pub rows: u64,
}

/// Bytes streamed into a staged object.
#[async_trait]
pub trait StagedUpload: Send + Debug {
    /// Append bytes.
    async fn write(&mut self, bytes: Bytes) -> Result<(), LakeError>;
    /// Make the bytes durable (fsync, or the last part uploaded); still invisible.
    async fn finish(self: Box<Self>) -> Result<StagedObject, LakeError>;
    /// Drop what was written.
    async fn abort(self: Box<Self>);
}

/// A lake backend.
///
/// Contract:
/// - [`Storage::put`] replaces atomically: a reader sees the old or the new bytes.
/// - [`Storage::put_if`] MUST fail with [`LakeError::Conflict`] when the precondition does
///   not hold, and two concurrent calls with the same precondition MUST NOT both succeed.
/// - A staged object MUST NOT be visible to [`Storage::list`] under its final key (nor as
///   any key ending in `.parquet`) before [`Storage::publish`].
/// - [`Storage::publish`] MUST be idempotent: publishing an already published object
///   succeeds and changes nothing.
#[async_trait]
pub trait Storage: Send + Sync + Debug {
    /// The root as a URL, for messages (`file:///srv/lake`, `s3://bucket/raw`).
    fn url(&self) -> String;
    /// Read an object and its version; `None` when absent.
    async fn get(&self, key: &str) -> Result<Option<(Bytes, Version)>, LakeError>;
    /// Write an object, replacing it atomically.
    async fn put(&self, key: &str, bytes: Bytes) -> Result<Version, LakeError>;
    /// Write an object only if the precondition holds.
    async fn put_if(
        &self,
        key: &str,
        bytes: Bytes,
        condition: Precondition,
    ) -> Result<Version, LakeError>;
    /// Every object whose key starts with `prefix`, sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, LakeError>;
    /// Remove an object; absent objects are not an error.
    async fn delete(&self, key: &str) -> Result<(), LakeError>;
    /// Start a staged upload that [`Storage::publish`] will make visible at `final_key`.
    async fn stage(&self, final_key: &str) -> Result<Box<dyn StagedUpload>, LakeError>;
    /// Make a staged object visible under its final key.
    async fn publish(&self, staged: &StagedObject) -> Result<(), LakeError>;
    /// Drop a staged object that will never be published.
    async fn discard(&self, staged: &StagedObject) -> Result<(), LakeError>;
    /// Prove the lake can be written: by default put, read back and delete a small
    /// object. Errors say what is missing (bucket, permission, region, credentials).
    async fn probe(&self) -> Result<(), LakeError> {
        probe_roundtrip(self).await
    }
    /// Staged objects of one source still waiting (for garbage collection by the holder
    /// of the source's lease).
    async fn list_staged(&self, source: &str) -> Result<Vec<StagedObject>, LakeError>;
}

/// Put, read back and delete a small probe object (the write test of `inlet check`), and
/// prove that conditional writes are honoured: state and leases rely on them.
pub(crate) async fn probe_roundtrip<S: Storage + ?Sized>(storage: &S) -> Result<(), LakeError> {
    let key = format!(
        "{}/probe/{}",
        crate::layout::META,
        uuid::Uuid::now_v7().simple()
    );
    storage
        .put(&key, Bytes::from_static(b"inlet probe"))
        .await?;
    storage.get(&key).await?;
    storage.delete(&key).await?;
    let cond = format!("{key}-conditional");
    storage
        .put_if(&cond, Bytes::from_static(b"1"), Precondition::Absent)
        .await?;
    let second = storage
        .put_if(&cond, Bytes::from_static(b"2"), Precondition::Absent)
        .await;
    storage.delete(&cond).await?;
    match second {
        Err(LakeError::Conflict { .. }) => Ok(()),
        Ok(_) => Err(LakeError::Invalid(format!(
            "{}: the store ignores conditional writes (If-None-Match: *); inlet's state and leases need them",
            storage.url()
        ))),
        Err(e) => Err(e),
    }
}
