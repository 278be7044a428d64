//! One run per connection at a time: a lease object next to the state, created with a
//! conditional write, renewed while the run goes on, taken over only after it expires.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::{LakeError, Precondition, Storage, Version, layout};

/// What the lease object says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseInfo {
    /// `host:pid` of the holder.
    pub holder: String,
    /// The holder's run.
    pub run_id: String,
    /// When it was taken.
    pub acquired_at: DateTime<Utc>,
    /// When it lapses unless renewed.
    pub expires_at: DateTime<Utc>,
    /// The holder's PID namespace (`pid:[inode]`), so a process only judges holders whose
    /// PIDs it can see.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_namespace: Option<String>,
}

/// A held lease. Release it when the run ends; a crashed holder's lease lapses.
#[derive(Debug)]
pub struct Lease {
    storage: Arc<dyn Storage>,
    key: String,
    info: LeaseInfo,
    version: Version,
    ttl: Duration,
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

fn holder() -> String {
    format!("{}:{}", host(), std::process::id())
}

fn pid_namespace() -> Option<String> {
    std::fs::read_link("/proc/self/ns/pid")
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// Whether the holder is a process on this host, in our PID namespace, that no longer
/// exists (it was killed): its lease need not be waited out. Holders we cannot see (other
/// hosts, other containers) are only ever taken over when their lease expires.
fn holder_is_dead_here(info: &LeaseInfo) -> bool {
    let Some((h, pid)) = info.holder.rsplit_once(':') else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    let same_namespace = info.pid_namespace.is_some() && info.pid_namespace == pid_namespace();
    h == host()
        && same_namespace
        && pid != std::process::id()
        && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

impl Lease {
    /// Take the lease of `connection` for `run_id`, or fail with [`LakeError::Busy`].
    pub async fn acquire(
        storage: Arc<dyn Storage>,
        connection: &str,
        run_id: &str,
        ttl: Duration,
    ) -> Result<Lease, LakeError> {
        let key = layout::lease_key(connection);
        let now = Utc::now();
        let info = LeaseInfo {
            holder: holder(),
            run_id: run_id.to_string(),
            acquired_at: now,
            expires_at: now + ttl,
            pid_namespace: pid_namespace(),
        };
        let bytes = Bytes::from(
            serde_json::to_vec_pretty(&info).map_err(|e| LakeError::Invalid(e.to_string()))?,
        );
        let condition = match storage.get(&key).await? {
            None => Precondition::Absent,
            Some((existing, version)) => {
                let held: Option<LeaseInfo> = serde_json::from_slice(&existing).ok();
                match held {
                    Some(h) if h.expires_at > now && holder_is_dead_here(&h) => {
                        tracing::warn!(connection, holder = %h.holder, run_id = %h.run_id, "taking over the lease of a process on this host that no longer runs");
                        Precondition::Matches(version)
                    }
                    Some(h) if h.expires_at > now => {
                        return Err(LakeError::Busy {
                            connection: connection.to_string(),
                            holder: h.holder,
                            run_id: h.run_id,
                            expires_at: h.expires_at.to_rfc3339(),
                        });
                    }
                    Some(h) => {
                        tracing::warn!(connection, holder = %h.holder, run_id = %h.run_id, "taking over an expired lease");
                        Precondition::Matches(version)
                    }
                    None => Precondition::Matches(version),
                }
            }
        };
        let version = storage
            .put_if(&key, bytes, condition)
            .await
            .map_err(|e| match e {
                LakeError::Conflict { .. } => LakeError::Busy {
                    connection: connection.to_string(),
                    holder: "another process".into(),
                    run_id: "unknown".into(),
                    expires_at: "unknown".into(),
                },
                other => other,
            })?;
        Ok(Lease {
            storage,
            key,
            info,
            version,
            ttl,
        })
    }

    /// What this lease says.
    pub fn info(&self) -> &LeaseInfo {
        &self.info
    }

    /// Extend the lease; fails with a conflict if someone took it over.
    pub async fn renew(&mut self) -> Result<(), LakeError> {
        let mut info = self.info.clone();
        info.expires_at = Utc::now() + self.ttl;
        let bytes = Bytes::from(
            serde_json::to_vec_pretty(&info).map_err(|e| LakeError::Invalid(e.to_string()))?,
        );
        self.version = self
            .storage
            .put_if(
                &self.key,
                bytes,
                Precondition::Matches(self.version.clone()),
            )
            .await?;
        self.info = info;
        Ok(())
    }

    /// Give the lease up. Only deletes it if it is still ours.
    pub async fn release(self) -> Result<(), LakeError> {
        if let Some((_, version)) = self.storage.get(&self.key).await?
            && version == self.version
        {
            self.storage.delete(&self.key).await?;
        }
        Ok(())
    }

    /// Who holds the lease of `connection`, if anyone (expired leases included).
    pub async fn peek(
        storage: &dyn Storage,
        connection: &str,
    ) -> Result<Option<LeaseInfo>, LakeError> {
        Ok(storage
            .get(&layout::lease_key(connection))
            .await?
            .and_then(|(b, _)| serde_json::from_slice(&b).ok()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LocalStorage;

    #[tokio::test]
    async fn a_second_holder_is_told_who_holds_it_until_it_expires() {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn Storage> = Arc::new(LocalStorage::new(dir.path()).unwrap());
        let first = Lease::acquire(storage.clone(), "c", "r1", Duration::seconds(60))
            .await
            .unwrap();
        let err = Lease::acquire(storage.clone(), "c", "r2", Duration::seconds(60))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, LakeError::Busy { run_id, .. } if run_id == "r1"),
            "{err}"
        );
        first.release().await.unwrap();
        let expired = Lease::acquire(storage.clone(), "c", "r3", Duration::milliseconds(-1))
            .await
            .unwrap();
        drop(expired);
        Lease::acquire(storage, "c", "r4", Duration::seconds(60))
            .await
            .unwrap();
    }
}
