//! An in-memory [`Registry`] for the engine's unit tests: switchable
//! referrers API, `OCI-Subject`, ETags with preconditions, a log of calls,
//! and seeding/inspection that bypass the engine.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use crate::oci::{Descriptor, Digest, Manifest, Reference, RepoName};
use crate::registry::{
    Blob, BlobStream, ErrorKind, FetchedManifest, Operation, Precondition, PutManifestOutcome,
    ReferrersSupport, Registry, RegistryError,
};

#[derive(Default)]
struct State {
    blobs: HashMap<(String, Digest), Bytes>,
    manifests: HashMap<(String, Digest), (String, Bytes)>,
    tags: BTreeMap<(String, String), Digest>,
}

pub(crate) struct MemoryRegistry {
    name: String,
    pub api: bool,
    hidden: Mutex<Vec<Digest>>,
    fail_412: std::sync::atomic::AtomicUsize,
    /// Blob HEADs answer with a size one byte too big.
    lie_blob_head_size: std::sync::atomic::AtomicBool,
    /// Manifest PUTs to these tags answer 500.
    failing_tags: Mutex<Vec<String>>,
    state: Mutex<State>,
    log: Mutex<Vec<Operation>>,
}

impl MemoryRegistry {
    pub fn new(name: &str, api: bool) -> Self {
        MemoryRegistry {
            name: name.into(),
            api,
            hidden: Mutex::new(Vec::new()),
            fail_412: std::sync::atomic::AtomicUsize::new(0),
            lie_blob_head_size: std::sync::atomic::AtomicBool::new(false),
            failing_tags: Mutex::new(Vec::new()),
            state: Mutex::new(State::default()),
            log: Mutex::new(Vec::new()),
        }
    }

    fn err(&self, repo: &RepoName, op: Operation, kind: ErrorKind) -> RegistryError {
        RegistryError::new(self.name.clone(), repo.as_str(), op, None, kind)
    }

    fn record(&self, op: Operation) {
        self.log.lock().unwrap().push(op);
    }

    pub fn count(&self, op: Operation) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|o| **o == op)
            .count()
    }

    pub fn writes(&self) -> usize {
        self.count(Operation::ManifestPut)
            + self.count(Operation::BlobPut)
            + self.count(Operation::BlobMount)
    }

    /// The API will not list `d` (pushed before the registry had an API).
    pub fn hide_from_api(&self, d: &Digest) {
        self.hidden.lock().unwrap().push(d.clone());
    }

    /// The next `n` conditional manifest PUTs answer 412.
    pub fn fail_next_puts_with_412(&self, n: usize) {
        self.fail_412.store(n, std::sync::atomic::Ordering::SeqCst);
    }

    /// Every blob HEAD reports a size one byte more than the blob's.
    pub fn lie_about_blob_sizes(&self, lie: bool) {
        self.lie_blob_head_size
            .store(lie, std::sync::atomic::Ordering::SeqCst);
    }

    /// Manifest PUTs to `tag` fail with a 500.
    pub fn fail_puts_to_tag(&self, tag: &str) {
        self.failing_tags.lock().unwrap().push(tag.to_string());
    }

    pub fn clear_log(&self) {
        self.log.lock().unwrap().clear();
    }

    pub fn seed_blob(&self, repo: &str, bytes: &[u8]) -> Digest {
        let d = Digest::sha256(bytes);
        self.state
            .lock()
            .unwrap()
            .blobs
            .insert((repo.into(), d.clone()), Bytes::copy_from_slice(bytes));
        d
    }

    pub fn seed_manifest(
        &self,
        repo: &str,
        tag: Option<&str>,
        media_type: &str,
        bytes: &[u8],
    ) -> Digest {
        let d = Digest::sha256(bytes);
        let mut s = self.state.lock().unwrap();
        s.manifests.insert(
            (repo.into(), d.clone()),
            (media_type.into(), Bytes::copy_from_slice(bytes)),
        );
        if let Some(t) = tag {
            s.tags.insert((repo.into(), t.into()), d.clone());
        }
        d
    }

    pub fn manifest_bytes(&self, repo: &str, reference: &str) -> Option<(String, Bytes)> {
        let s = self.state.lock().unwrap();
        let d = match reference.parse::<Digest>() {
            Ok(d) => d,
            Err(_) => s
                .tags
                .get(&(repo.to_string(), reference.to_string()))?
                .clone(),
        };
        s.manifests.get(&(repo.to_string(), d)).cloned()
    }

    pub fn blob_bytes(&self, repo: &str, d: &Digest) -> Option<Bytes> {
        self.state
            .lock()
            .unwrap()
            .blobs
            .get(&(repo.to_string(), d.clone()))
            .cloned()
    }

    pub fn has_blob(&self, repo: &str, d: &Digest) -> bool {
        self.state
            .lock()
            .unwrap()
            .blobs
            .contains_key(&(repo.to_string(), d.clone()))
    }

    pub fn tag_list(&self, repo: &str) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .tags
            .keys()
            .filter(|(r, _)| r == repo)
            .map(|(_, t)| t.clone())
            .collect()
    }

    fn resolve(&self, repo: &RepoName, reference: &Reference) -> Option<(Digest, String, Bytes)> {
        let s = self.state.lock().unwrap();
        let d = match reference {
            Reference::Digest(d) => d.clone(),
            Reference::Tag(t) => s.tags.get(&(repo.to_string(), t.to_string()))?.clone(),
        };
        let (mt, b) = s.manifests.get(&(repo.to_string(), d.clone()))?.clone();
        Some((d, mt, b))
    }

    /// Referrers by subject scan, as the API would list them.
    pub fn scan(&self, repo: &str, subject: &Digest) -> Vec<Descriptor> {
        let s = self.state.lock().unwrap();
        let mut out: Vec<Descriptor> = s
            .manifests
            .iter()
            .filter(|((r, _), _)| r == repo)
            .filter_map(|(_, (mt, b))| Manifest::parse(b.clone(), Some(mt)).ok())
            .filter(|m| m.subject().is_some_and(|x| &x.digest == subject))
            .map(|m| m.referrer_descriptor())
            .collect();
        out.sort_by(|a, b| a.digest.cmp(&b.digest));
        out
    }
}

#[async_trait]
impl Registry for MemoryRegistry {
    fn name(&self) -> &str {
        &self.name
    }

    async fn manifest_head(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<Descriptor>, RegistryError> {
        self.record(Operation::ManifestHead);
        Ok(self
            .resolve(repo, reference)
            .map(|(d, mt, b)| Descriptor::new(mt, d, b.len() as u64)))
    }

    async fn manifest_fetch(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<FetchedManifest>, RegistryError> {
        self.record(Operation::ManifestGet);
        let Some((d, mt, b)) = self.resolve(repo, reference) else {
            return Ok(None);
        };
        let manifest = Manifest::parse(b, Some(&mt))
            .map_err(|e| self.err(repo, Operation::ManifestGet, ErrorKind::Manifest(e)))?;
        Ok(Some(FetchedManifest {
            manifest,
            etag: Some(format!("\"{d}\"")),
        }))
    }

    async fn manifest_put(
        &self,
        repo: &RepoName,
        reference: &Reference,
        manifest: &Manifest,
        precondition: Precondition,
    ) -> Result<PutManifestOutcome, RegistryError> {
        self.record(Operation::ManifestPut);
        tokio::task::yield_now().await;
        if let Reference::Tag(t) = reference
            && self.failing_tags.lock().unwrap().contains(&t.to_string())
        {
            return Err(self.err(
                repo,
                Operation::ManifestPut,
                ErrorKind::Status {
                    status: 500,
                    codes: Vec::new(),
                    message: "injected fault".into(),
                    retry_after: None,
                },
            ));
        }
        if precondition != Precondition::None
            && self
                .fail_412
                .fetch_update(
                    std::sync::atomic::Ordering::SeqCst,
                    std::sync::atomic::Ordering::SeqCst,
                    |n| n.checked_sub(1),
                )
                .is_ok()
        {
            return Err(self.err(repo, Operation::ManifestPut, ErrorKind::PreconditionFailed));
        }
        let current = self
            .resolve(repo, reference)
            .map(|(d, _, _)| format!("\"{d}\""));
        match (&precondition, &current) {
            (Precondition::IfNoneMatch, Some(_)) => {
                return Err(self.err(repo, Operation::ManifestPut, ErrorKind::PreconditionFailed));
            }
            (Precondition::IfMatch(want), c) if c.as_ref() != Some(want) => {
                return Err(self.err(repo, Operation::ManifestPut, ErrorKind::PreconditionFailed));
            }
            _ => {}
        }
        let mut s = self.state.lock().unwrap();
        let missing = manifest
            .blobs()
            .iter()
            .any(|b| !s.blobs.contains_key(&(repo.to_string(), b.digest.clone())))
            || manifest.child_manifests().iter().any(|c| {
                !s.manifests
                    .contains_key(&(repo.to_string(), c.digest.clone()))
            });
        if missing {
            return Err(self.err(
                repo,
                Operation::ManifestPut,
                ErrorKind::Status {
                    status: 400,
                    codes: vec!["MANIFEST_BLOB_UNKNOWN".into()],
                    message: String::new(),
                    retry_after: None,
                },
            ));
        }
        s.manifests.insert(
            (repo.to_string(), manifest.digest().clone()),
            (manifest.media_type().to_string(), manifest.bytes().clone()),
        );
        if let Reference::Tag(t) = reference {
            s.tags
                .insert((repo.to_string(), t.to_string()), manifest.digest().clone());
        }
        Ok(PutManifestOutcome {
            subject_indexed: self.api && manifest.subject().is_some(),
        })
    }

    async fn blob_head(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, RegistryError> {
        self.record(Operation::BlobHead);
        tokio::task::yield_now().await;
        Ok(self
            .state
            .lock()
            .unwrap()
            .blobs
            .get(&(repo.to_string(), digest.clone()))
            .map(|b| {
                let lie = self
                    .lie_blob_head_size
                    .load(std::sync::atomic::Ordering::SeqCst);
                b.len() as u64 + u64::from(lie)
            }))
    }

    async fn blob_get(&self, repo: &RepoName, digest: &Digest) -> Result<Blob, RegistryError> {
        self.record(Operation::BlobGet);
        let b = self
            .state
            .lock()
            .unwrap()
            .blobs
            .get(&(repo.to_string(), digest.clone()))
            .cloned()
            .ok_or_else(|| self.err(repo, Operation::BlobGet, ErrorKind::NotFound))?;
        // Verified, as the port requires of every adapter.
        let size = b.len() as u64;
        let stream = crate::registry::stream::verify(
            Box::pin(futures::stream::iter([Ok(b)])),
            digest.clone(),
            Some(size),
            crate::registry::stream::StreamContext {
                registry: self.name().to_string(),
                repo: repo.to_string(),
            },
        );
        Ok(Blob { size, stream })
    }

    async fn blob_put(
        &self,
        repo: &RepoName,
        desc: &Descriptor,
        mut body: BlobStream,
    ) -> Result<(), RegistryError> {
        self.record(Operation::BlobPut);
        // Let other tasks run mid-transfer, as a network would.
        tokio::task::yield_now().await;
        let mut all = Vec::new();
        while let Some(chunk) = body.next().await {
            all.extend_from_slice(&chunk?);
        }
        if !desc.digest.matches(&all) {
            return Err(self.err(
                repo,
                Operation::BlobPut,
                ErrorKind::DigestMismatch {
                    expected: desc.digest.clone(),
                    actual: Digest::sha256(&all),
                },
            ));
        }
        self.state
            .lock()
            .unwrap()
            .blobs
            .insert((repo.to_string(), desc.digest.clone()), Bytes::from(all));
        Ok(())
    }

    async fn blob_mount(
        &self,
        repo: &RepoName,
        digest: &Digest,
        from: &RepoName,
    ) -> Result<bool, RegistryError> {
        self.record(Operation::BlobMount);
        let mut s = self.state.lock().unwrap();
        match s.blobs.get(&(from.to_string(), digest.clone())).cloned() {
            Some(b) => {
                s.blobs.insert((repo.to_string(), digest.clone()), b);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// OCI 1.1 semantics: a tag untags; a digest removes the manifest and
    /// every tag pointing at it.
    async fn manifest_delete(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<bool, RegistryError> {
        self.record(Operation::ManifestDelete);
        let mut s = self.state.lock().unwrap();
        let r = repo.as_str().to_string();
        Ok(match reference {
            Reference::Tag(t) => s.tags.remove(&(r, t.to_string())).is_some(),
            Reference::Digest(d) => {
                s.tags.retain(|(tr, _), td| !(tr == &r && td == d));
                s.manifests.remove(&(r, d.clone())).is_some()
            }
        })
    }

    async fn tags(&self, repo: &RepoName) -> Result<Vec<String>, RegistryError> {
        self.record(Operation::TagList);
        Ok(self.tag_list(repo.as_str()))
    }

    async fn referrers_api(
        &self,
        repo: &RepoName,
        subject: &Digest,
    ) -> Result<Option<Vec<Descriptor>>, RegistryError> {
        self.record(Operation::Referrers);
        let hidden = self.hidden.lock().unwrap().clone();
        Ok(self.api.then(|| {
            self.scan(repo.as_str(), subject)
                .into_iter()
                .filter(|d| !hidden.contains(&d.digest))
                .collect()
        }))
    }

    async fn referrers_support(&self, _repo: &RepoName) -> Result<ReferrersSupport, RegistryError> {
        Ok(if self.api {
            ReferrersSupport::Supported
        } else {
            ReferrersSupport::Unsupported
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn delete_by_tag_untags_and_by_digest_removes_every_tag() {
        let reg = MemoryRegistry::new("mem", true);
        let repo = RepoName::new("a").unwrap();
        let mt = crate::oci::media_type::OCI_MANIFEST;
        let d = reg.seed_manifest("a", Some("one"), mt, b"{}");
        reg.seed_manifest("a", Some("two"), mt, b"{}");
        let tag = |t: &str| Reference::Tag(crate::oci::Tag::new(t).unwrap());
        assert!(reg.manifest_delete(&repo, &tag("one")).await.unwrap());
        assert!(!reg.manifest_delete(&repo, &tag("one")).await.unwrap());
        assert_eq!(reg.tag_list("a"), ["two"]);
        assert!(reg.manifest_bytes("a", &d.to_string()).is_some());
        let by_digest = Reference::Digest(d.clone());
        assert!(reg.manifest_delete(&repo, &by_digest).await.unwrap());
        assert!(reg.tag_list("a").is_empty());
        assert!(reg.manifest_bytes("a", &d.to_string()).is_none());
    }
}
