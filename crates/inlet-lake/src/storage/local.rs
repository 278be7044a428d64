//! The lake in a local directory.

use std::{
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
};

use async_trait::async_trait;
use bytes::Bytes;

use super::{ObjectMeta, Precondition, StagedObject, StagedUpload, Storage, Version};
use crate::{LakeError, layout};

/// The lake in a local directory. Atomicity by temp file + fsync + rename; conditional
/// writes under an exclusive file lock; versions are content digests.
#[derive(Debug, Clone)]
pub struct LocalStorage {
    root: PathBuf,
}

impl LocalStorage {
    /// A lake rooted at `root` (created if missing).
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, LakeError> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(|e| LakeError::io(root.display().to_string(), e))?;
        let root = root
            .canonicalize()
            .map_err(|e| LakeError::io(root.display().to_string(), e))?;
        Ok(LocalStorage { root })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf, LakeError> {
        if key.split('/').any(|p| p == ".." || p == ".") || key.starts_with('/') {
            return Err(LakeError::Invalid(format!(
                "key `{key}` escapes the lake root"
            )));
        }
        Ok(self.root.join(key))
    }

    fn err(&self, path: &Path, e: io::Error) -> LakeError {
        LakeError::io(path.display().to_string(), e)
    }

    /// Write `bytes` to a temp file beside `path`, fsync it, and return the temp path.
    fn write_temp(&self, path: &Path, bytes: &[u8]) -> Result<PathBuf, LakeError> {
        let dir = path.parent().unwrap_or(&self.root);
        fs::create_dir_all(dir).map_err(|e| self.err(dir, e))?;
        let tmp = dir.join(format!(
            ".{}.{}.tmp",
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("object"),
            uuid::Uuid::now_v7().simple()
        ));
        let mut f = fs::File::create(&tmp).map_err(|e| self.err(&tmp, e))?;
        f.write_all(bytes).map_err(|e| self.err(&tmp, e))?;
        f.sync_all().map_err(|e| self.err(&tmp, e))?;
        Ok(tmp)
    }

    /// Replace the file at `path` atomically and durably: temp file, fsync, rename, fsync
    /// of the directory.
    fn replace(&self, path: &Path, bytes: &[u8]) -> Result<Version, LakeError> {
        let tmp = self.write_temp(path, bytes)?;
        fs::rename(&tmp, path).map_err(|e| self.err(path, e))?;
        if let Some(dir) = path.parent() {
            sync_dir(dir).map_err(|e| self.err(dir, e))?;
        }
        Ok(digest(bytes))
    }

    fn lock_dir(&self, path: &Path) -> Result<fs::File, LakeError> {
        let dir = path.parent().unwrap_or(&self.root);
        fs::create_dir_all(dir).map_err(|e| self.err(dir, e))?;
        let lock_path = dir.join(".lock");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| self.err(&lock_path, e))?;
        lock.lock().map_err(|e| self.err(&lock_path, e))?;
        Ok(lock)
    }
}

/// Content digest used as the version of local objects.
fn digest(bytes: &[u8]) -> Version {
    // FNV-1a 128 would do; a 64-bit FNV over content and length is enough to tell versions
    // of small metadata objects apart, and needs no extra dependency.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    Version(format!("{h:016x}-{}", bytes.len()))
}

/// fsync a directory so a rename or create in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[async_trait]
impl Storage for LocalStorage {
    fn url(&self) -> String {
        format!("file://{}", self.root.display())
    }

    async fn get(&self, key: &str) -> Result<Option<(Bytes, Version)>, LakeError> {
        let path = self.path(key)?;
        match fs::read(&path) {
            Ok(b) => {
                let v = digest(&b);
                Ok(Some((Bytes::from(b), v)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err(&path, e)),
        }
    }

    async fn put(&self, key: &str, bytes: Bytes) -> Result<Version, LakeError> {
        self.replace(&self.path(key)?, &bytes)
    }

    async fn put_if(
        &self,
        key: &str,
        bytes: Bytes,
        condition: Precondition,
    ) -> Result<Version, LakeError> {
        let path = self.path(key)?;
        let _lock = self.lock_dir(&path)?;
        let current = match fs::read(&path) {
            Ok(b) => Some(digest(&b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(self.err(&path, e)),
        };
        match (&condition, &current) {
            (Precondition::Absent, None) => {}
            (Precondition::Matches(want), Some(have)) if want == have => {}
            (Precondition::Absent, Some(_)) => {
                return Err(LakeError::Conflict {
                    resource: key.to_string(),
                    message: "expected it to be absent, it exists".into(),
                });
            }
            (Precondition::Matches(_), _) => {
                return Err(LakeError::Conflict {
                    resource: key.to_string(),
                    message: "its version is not the one read before".into(),
                });
            }
        }
        self.replace(&path, &bytes)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, LakeError> {
        // Walk from the deepest folder the prefix names.
        let dir_part = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        let start = self.path(dir_part)?;
        let mut out = Vec::new();
        let mut stack = vec![start];
        while let Some(dir) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.err(&dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| self.err(&dir, e))?;
                let path = entry.path();
                let ft = entry.file_type().map_err(|e| self.err(&path, e))?;
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if ft.is_dir() {
                    stack.push(path);
                } else if ft.is_file() && !name.starts_with('.') {
                    let Ok(rel) = path.strip_prefix(&self.root) else {
                        continue;
                    };
                    let key = rel.to_string_lossy().replace('\\', "/");
                    if key.starts_with(prefix) {
                        let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                        out.push(ObjectMeta { key, size });
                    }
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn delete(&self, key: &str) -> Result<(), LakeError> {
        let path = self.path(key)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err(&path, e)),
        }
    }

    async fn stage(&self, final_key: &str) -> Result<Box<dyn StagedUpload>, LakeError> {
        self.path(final_key)?;
        let staging = layout::staging_key(final_key);
        let path = self.path(&staging)?;
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| self.err(dir, e))?;
        }
        let file = fs::File::create(&path).map_err(|e| self.err(&path, e))?;
        Ok(Box::new(LocalUpload {
            file: io::BufWriter::with_capacity(1 << 20, file),
            path,
            staging,
            final_key: final_key.to_string(),
            size: 0,
        }))
    }

    async fn publish(&self, staged: &StagedObject) -> Result<(), LakeError> {
        let from = self.path(&staged.staging)?;
        let to = self.path(&staged.final_key)?;
        if !from.exists() {
            // Already published by an earlier attempt (rename is the only way it leaves).
            return if to.exists() {
                Ok(())
            } else {
                Err(LakeError::Corrupt {
                    resource: staged.final_key.clone(),
                    message: format!("neither staged ({}) nor published", staged.staging),
                })
            };
        }
        let dir = to.parent().unwrap_or(&self.root);
        fs::create_dir_all(dir).map_err(|e| self.err(dir, e))?;
        fs::rename(&from, &to).map_err(|e| self.err(&to, e))?;
        sync_dir(dir).map_err(|e| self.err(dir, e))?;
        crate::failpoint("after-publish-one");
        Ok(())
    }

    async fn discard(&self, staged: &StagedObject) -> Result<(), LakeError> {
        self.delete(&staged.staging).await
    }

    async fn list_staged(&self, source: &str) -> Result<Vec<StagedObject>, LakeError> {
        let prefix = layout::staging_prefix(source);
        let staging_root = layout::staging_key("");
        let staging_root = staging_root.trim_end_matches(".inprogress");
        Ok(self
            .list(&prefix)
            .await?
            .into_iter()
            .filter_map(|o| {
                let final_key = o
                    .key
                    .strip_prefix(staging_root)?
                    .strip_suffix(".inprogress")?
                    .to_string();
                Some(StagedObject {
                    final_key,
                    staging: o.key,
                    size: o.size,
                    rows: 0,
                })
            })
            .collect())
    }
}

#[derive(Debug)]
struct LocalUpload {
    file: io::BufWriter<fs::File>,
    path: PathBuf,
    staging: String,
    final_key: String,
    size: u64,
}

#[async_trait]
impl StagedUpload for LocalUpload {
    async fn write(&mut self, bytes: Bytes) -> Result<(), LakeError> {
        self.file
            .write_all(&bytes)
            .map_err(|e| LakeError::io(self.path.display().to_string(), e))?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    async fn finish(self: Box<Self>) -> Result<StagedObject, LakeError> {
        let path = self.path.display().to_string();
        let file = self
            .file
            .into_inner()
            .map_err(|e| LakeError::io(path.clone(), e.into_error()))?;
        file.sync_all()
            .map_err(|e| LakeError::io(path.clone(), e))?;
        // The staged file's directory entry must survive a power loss too: a commit
        // will list it.
        if let Some(dir) = self.path.parent() {
            sync_dir(dir).map_err(|e| LakeError::io(path, e))?;
        }
        Ok(StagedObject {
            final_key: self.final_key,
            staging: self.staging,
            size: self.size,
            rows: 0,
        })
    }

    async fn abort(self: Box<Self>) {
        drop(self.file);
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::*;

    #[tokio::test]
    async fn conditional_writes_let_one_writer_win() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(dir.path()).unwrap();
        let v1 = s
            .put_if("a/x.json", Bytes::from("1"), Precondition::Absent)
            .await
            .unwrap();
        assert!(matches!(
            s.put_if("a/x.json", Bytes::from("2"), Precondition::Absent)
                .await,
            Err(LakeError::Conflict { .. })
        ));
        let v2 = s
            .put_if(
                "a/x.json",
                Bytes::from("2"),
                Precondition::Matches(v1.clone()),
            )
            .await
            .unwrap();
        assert!(matches!(
            s.put_if("a/x.json", Bytes::from("3"), Precondition::Matches(v1))
                .await,
            Err(LakeError::Conflict { .. })
        ));
        assert_eq!(
            s.get("a/x.json").await.unwrap().unwrap(),
            (Bytes::from("2"), v2)
        );
    }

    #[tokio::test]
    async fn staged_objects_are_invisible_until_published_and_publish_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(dir.path()).unwrap();
        let mut up = s
            .stage("src/st/extracted_at=2026-01-01/part-1.parquet")
            .await
            .unwrap();
        up.write(Bytes::from_static(b"PAR1....")).await.unwrap();
        let staged = up.finish().await.unwrap();
        let visible: Vec<_> = s.list("src/").await.unwrap();
        assert!(visible.is_empty());
        let all = s.list("").await.unwrap();
        assert!(all.iter().all(|o| !o.key.ends_with(".parquet")), "{all:?}");
        assert_eq!(
            s.list_staged("src").await.unwrap(),
            vec![StagedObject {
                rows: 0,
                ..staged.clone()
            }]
        );
        s.publish(&staged).await.unwrap();
        s.publish(&staged).await.unwrap();
        assert_eq!(s.list("src/").await.unwrap().len(), 1);
        assert!(s.list_staged("src").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn keys_cannot_escape_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(dir.path()).unwrap();
        assert!(s.put("../evil", Bytes::new()).await.is_err());
    }
}
