//! The OCI image layout adapter: a [`Registry`] over a directory holding
//! `oci-layout`, `index.json` and `blobs/<alg>/<hex>`.
//!
//! Repository `""` ([`RepoName::root`]) is the root directory itself; any
//! other repository is the layout at `<root>/<repo>`, so a whole registry can
//! be exported as a tree of layouts.
//!
//! Tags are `index.json` entries annotated `org.opencontainers.image.ref.name`.
//! Like oras-go, every manifest pushed without a tag is listed too (without a
//! ref.name), so content stays discoverable. Like regclient's `ocidir`, the
//! referrers fallback tag (`sha256-<hex>`) is an ordinary tag here; readers can
//! add [`LayoutRegistry::referrers_by_scan`].
//!
//! Writes are atomic: content goes to a temp file next to its destination and
//! is renamed into place only once verified; `index.json` is rewritten the same
//! way, last, under a per-directory lock: a mutex shared by every instance in
//! the process, plus an advisory lock on [`LOCK_FILE`] against other
//! ocimirror processes (tools that do not take it, such as skopeo, are not
//! excluded). Concurrent updates of one directory are committed together
//! (one rewrite, one fsync) and the parsed `index.json` is cached per
//! directory, so large layouts do not cost a full parse per request (see
//! `layout/index.rs`). Every read is verified against its digest.
//!
//! References: image-spec `image-layout.md`; spec notes §7.

mod index;

use std::collections::BTreeSet;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::io::ReaderStream;

use self::index::IndexFile;
use super::stream::{StreamContext, verify};
use super::{
    Blob, BlobStream, ErrorKind, FetchedManifest, Operation, Precondition, PutManifestOutcome,
    ReferrersSupport, Registry, RegistryError,
};
use crate::oci::manifest::MAX_MANIFEST_SIZE;
use crate::oci::media_type as mt;
use crate::oci::{Descriptor, Digest, Digester, Manifest, ManifestError, Reference, RepoName, Tag};

/// The annotation that names a tag in `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Content of the `oci-layout` file.
const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// An OCI image layout directory (or a tree of them), read and write.
#[derive(Clone, Debug)]
pub struct LayoutRegistry {
    root: PathBuf,
    name: String,
}

/// The tag a ref.name stands for: the whole value when it is a valid tag,
/// else the part after the last `:` of a full reference (`host/app:v1`);
/// `None` for digest references (`app@sha256:...`) and anything else.
fn tag_of_ref_name(name: &str) -> Option<&str> {
    if Tag::new(name).is_ok() {
        return Some(name);
    }
    if name.contains('@') {
        return None;
    }
    let (head, tail) = name.rsplit_once(':')?;
    (!head.is_empty() && !tail.contains('/') && Tag::new(tail).is_ok()).then_some(tail)
}

/// Joins `parts` under `base`, refusing anything that is not a plain name
/// (empty, `.`, `..`, absolute, containing a separator or NUL), so no path
/// built here can leave `base`.
pub(crate) fn contained_join<'a>(
    base: &Path,
    parts: impl IntoIterator<Item = &'a str>,
) -> Option<PathBuf> {
    let mut out = base.to_path_buf();
    for part in parts {
        if part.is_empty() || part.contains(['/', '\\', '\0']) {
            return None;
        }
        let mut comps = Path::new(part).components();
        match (comps.next(), comps.next()) {
            (Some(Component::Normal(c)), None) if c == part => out.push(c),
            _ => return None,
        }
    }
    Some(out)
}

/// A temp file that is removed unless persisted, even when the writing
/// future is dropped half-way.
struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl TempFile {
    fn new(dir: &Path) -> Self {
        TempFile {
            path: dir.join(format!(".tmp-{:016x}", rand::random::<u64>())),
            keep: false,
        }
    }

    async fn persist(mut self, to: &Path) -> io::Result<()> {
        tokio::fs::rename(&self.path, to).await?;
        self.keep = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Writes `bytes` to `path` atomically (temp file in the same directory,
/// fsync, rename).
async fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"))?;
    let tmp = TempFile::new(dir);
    let mut f = tokio::fs::File::create(&tmp.path).await?;
    f.write_all(bytes).await?;
    f.sync_all().await?;
    drop(f);
    tmp.persist(path).await
}

/// Reads at most `limit + 1` bytes of a file (so callers can tell "too
/// big"); `Ok(None)` when it does not exist.
async fn read_limited(path: &Path, limit: u64) -> io::Result<Option<Vec<u8>>> {
    let f = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut buf = Vec::new();
    f.take(limit + 1).read_to_end(&mut buf).await?;
    Ok(Some(buf))
}

/// Name of the lock file that serialises `index.json` updates between
/// processes (an extra file, which the layout spec allows).
pub const LOCK_FILE: &str = ".ocimirror-index.lock";

impl LayoutRegistry {
    /// A layout registry rooted at `root`. Nothing is touched until the first
    /// write, which creates the directories it needs.
    pub fn open(root: impl Into<PathBuf>) -> LayoutRegistry {
        let root = root.into();
        let name = format!("oci:{}", root.display());
        LayoutRegistry { root, name }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn err(
        &self,
        repo: &RepoName,
        op: Operation,
        target: Option<String>,
        kind: ErrorKind,
    ) -> RegistryError {
        RegistryError::new(self.name.clone(), repo.as_str(), op, target, kind)
    }

    /// The layout directory of `repo`.
    fn dir(&self, repo: &RepoName, op: Operation) -> Result<PathBuf, RegistryError> {
        if repo.is_root() {
            return Ok(self.root.clone());
        }
        contained_join(&self.root, repo.as_str().split('/')).ok_or_else(|| {
            self.err(
                repo,
                op,
                None,
                ErrorKind::InvalidResponse(format!(
                    "repository {:?} does not map to a directory inside the layout",
                    repo.as_str()
                )),
            )
        })
    }

    fn blob_path(
        &self,
        dir: &Path,
        repo: &RepoName,
        op: Operation,
        digest: &Digest,
    ) -> Result<PathBuf, RegistryError> {
        contained_join(dir, ["blobs", digest.algorithm().as_str(), digest.hex()]).ok_or_else(|| {
            self.err(
                repo,
                op,
                Some(digest.to_string()),
                ErrorKind::InvalidResponse("digest does not map to a blob path".into()),
            )
        })
    }

    /// Reads `index.json` (cached); `None` when it does not exist.
    async fn index(
        &self,
        dir: &Path,
        repo: &RepoName,
        op: Operation,
        target: Option<String>,
    ) -> Result<Option<Arc<IndexFile>>, RegistryError> {
        index::load(dir)
            .await
            .map_err(|f| self.err(repo, op, target, f.into_kind()))
    }

    /// Creates the layout skeleton (`blobs/<alg>`, `oci-layout`, an empty
    /// `index.json`) where missing. Call with the directory's index lock held
    /// when `index.json` may be created.
    async fn ensure_layout(&self, dir: &Path, alg: Option<&str>) -> io::Result<()> {
        let blobs = dir.join("blobs");
        match alg {
            Some(a) => tokio::fs::create_dir_all(blobs.join(a)).await?,
            None => tokio::fs::create_dir_all(&blobs).await?,
        }
        let layout = dir.join("oci-layout");
        if !tokio::fs::try_exists(&layout).await? {
            write_atomic(&layout, OCI_LAYOUT).await?;
        }
        Ok(())
    }

    /// Reads, verifies and parses the manifest blob `digest`; `None` when the
    /// file does not exist.
    async fn read_manifest(
        &self,
        dir: &Path,
        repo: &RepoName,
        op: Operation,
        digest: &Digest,
        media_type: Option<&str>,
    ) -> Result<Option<Manifest>, RegistryError> {
        let path = self.blob_path(dir, repo, op, digest)?;
        let target = Some(digest.to_string());
        let bytes = read_limited(&path, MAX_MANIFEST_SIZE as u64)
            .await
            .map_err(|e| self.err(repo, op, target.clone(), ErrorKind::Io(e)))?;
        let Some(bytes) = bytes else { return Ok(None) };
        if bytes.len() > MAX_MANIFEST_SIZE {
            let kind = ErrorKind::Manifest(ManifestError::TooLarge {
                size: bytes.len(),
                limit: MAX_MANIFEST_SIZE,
            });
            return Err(self.err(repo, op, target, kind));
        }
        let actual = Digest::compute(digest.algorithm(), &bytes);
        if &actual != digest {
            return Err(self.err(
                repo,
                op,
                target,
                ErrorKind::DigestMismatch {
                    expected: digest.clone(),
                    actual,
                },
            ));
        }
        let manifest = Manifest::parse_with(Bytes::from(bytes), media_type, digest.algorithm())
            .map_err(|e| self.err(repo, op, target, ErrorKind::Manifest(e)))?;
        Ok(Some(manifest))
    }

    /// Resolves a reference to the digest and, when `index.json` lists it,
    /// its entry there.
    async fn resolve(
        &self,
        dir: &Path,
        repo: &RepoName,
        reference: &Reference,
        op: Operation,
    ) -> Result<Option<(Digest, Option<Descriptor>)>, RegistryError> {
        let index = self
            .index(dir, repo, op, Some(reference.to_string()))
            .await?;
        Ok(match reference {
            Reference::Tag(tag) => index
                .and_then(|i| i.find_tag(tag.as_str()).cloned())
                .map(|d| (d.digest.clone(), Some(d))),
            Reference::Digest(digest) => {
                let entry = index.and_then(|i| i.find_digest(digest).cloned());
                Some((digest.clone(), entry))
            }
        })
    }

    /// Writes a blob file atomically from `body`, checking digest and size as
    /// it streams.
    async fn write_blob(
        &self,
        dir: &Path,
        repo: &RepoName,
        desc: &Descriptor,
        mut body: BlobStream,
    ) -> Result<(), RegistryError> {
        let op = Operation::BlobPut;
        let target = Some(desc.digest.to_string());
        let io_err = |e: io::Error| self.err(repo, op, target.clone(), ErrorKind::Io(e));
        let path = self.blob_path(dir, repo, op, &desc.digest)?;
        let alg_dir = path
            .parent()
            .ok_or_else(|| io_err(io::Error::other("blob path has no parent")))?;
        self.ensure_layout(dir, Some(desc.digest.algorithm().as_str()))
            .await
            .map_err(io_err)?;
        let tmp = TempFile::new(alg_dir);
        let mut file = tokio::fs::File::create(&tmp.path).await.map_err(io_err)?;
        let size_mismatch = |actual| {
            self.err(
                repo,
                op,
                target.clone(),
                ErrorKind::SizeMismatch {
                    expected: desc.size,
                    actual,
                },
            )
        };
        let mut digester = Digester::new(desc.digest.algorithm());
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            digester.update(&chunk);
            if digester.len() > desc.size {
                return Err(size_mismatch(digester.len()));
            }
            file.write_all(&chunk).await.map_err(io_err)?;
        }
        if digester.len() != desc.size {
            return Err(size_mismatch(digester.len()));
        }
        let actual = digester.finish();
        if actual != desc.digest {
            return Err(self.err(
                repo,
                op,
                target.clone(),
                ErrorKind::DigestMismatch {
                    expected: desc.digest.clone(),
                    actual,
                },
            ));
        }
        file.sync_all().await.map_err(io_err)?;
        drop(file);
        tmp.persist(&path).await.map_err(io_err)
    }

    /// Referrers of `subject` found by reading every manifest listed in
    /// `index.json` and keeping those whose `subject` is `subject`. Merge
    /// with the fallback tag's entries (spec notes §7). Listed manifests
    /// whose blob is missing or not a manifest are skipped. The scan is
    /// done once per version of `index.json` and answers every subject.
    pub async fn referrers_by_scan(
        &self,
        repo: &RepoName,
        subject: &Digest,
    ) -> Result<Vec<Descriptor>, RegistryError> {
        let op = Operation::Referrers;
        let dir = self.dir(repo, op)?;
        let Some(index) = self
            .index(&dir, repo, op, Some(subject.to_string()))
            .await?
        else {
            return Ok(Vec::new());
        };
        if let Some(map) = index::cached_subjects(&dir, &index).await {
            return Ok(map.get(subject).cloned().unwrap_or_default());
        }
        let mut seen = BTreeSet::new();
        let mut map = index::SubjectMap::new();
        for entry in index.descriptors() {
            if !mt::is_manifest(&entry.media_type) || !seen.insert(entry.digest.clone()) {
                continue;
            }
            let manifest = match self
                .read_manifest(&dir, repo, op, &entry.digest, Some(&entry.media_type))
                .await
            {
                Ok(Some(m)) => m,
                Ok(None) => continue,
                Err(e) if matches!(e.kind, ErrorKind::Manifest(_)) => {
                    tracing::warn!(error = %e, "skipping unreadable manifest in layout scan");
                    continue;
                }
                Err(e) => return Err(e),
            };
            if let Some(s) = manifest.subject() {
                map.entry(s.digest.clone())
                    .or_default()
                    .push(manifest.referrer_descriptor());
            }
        }
        let out = map.get(subject).cloned().unwrap_or_default();
        index::store_subjects(&dir, &index, Arc::new(map)).await;
        Ok(out)
    }
}

#[async_trait]
impl Registry for LayoutRegistry {
    fn name(&self) -> &str {
        &self.name
    }

    fn is_layout(&self) -> bool {
        true
    }

    async fn manifest_head(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<Descriptor>, RegistryError> {
        Ok(self
            .manifest_fetch(repo, reference)
            .await?
            .map(|f| f.manifest.descriptor()))
    }

    async fn manifest_fetch(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<FetchedManifest>, RegistryError> {
        let op = Operation::ManifestGet;
        let dir = self.dir(repo, op)?;
        let Some((digest, entry)) = self.resolve(&dir, repo, reference, op).await? else {
            return Ok(None);
        };
        let media_type = entry.as_ref().map(|e| e.media_type.as_str());
        let manifest = match self
            .read_manifest(&dir, repo, op, &digest, media_type)
            .await
        {
            // An unlisted blob that is not a manifest (a layer, a config) is
            // no manifest, as a registry would answer; a listed one is broken.
            Err(e) if entry.is_none() && matches!(e.kind, ErrorKind::Manifest(_)) => None,
            other => other?,
        };
        Ok(manifest.map(|manifest| FetchedManifest {
            etag: Some(manifest.digest().to_string()),
            manifest,
        }))
    }

    async fn manifest_put(
        &self,
        repo: &RepoName,
        reference: &Reference,
        manifest: &Manifest,
        precondition: Precondition,
    ) -> Result<PutManifestOutcome, RegistryError> {
        let op = Operation::ManifestPut;
        let target = Some(reference.to_string());
        let dir = self.dir(repo, op)?;
        // Stored under the digest it is addressed by (its own algorithm).
        let digest = match reference {
            Reference::Digest(d) => {
                let actual = Digest::compute(d.algorithm(), manifest.bytes());
                if &actual != d {
                    return Err(self.err(
                        repo,
                        op,
                        target,
                        ErrorKind::DigestMismatch {
                            expected: d.clone(),
                            actual,
                        },
                    ));
                }
                actual
            }
            Reference::Tag(_) => manifest.digest().clone(),
        };
        let desc = Descriptor::new(
            manifest.media_type(),
            digest.clone(),
            manifest.bytes().len() as u64,
        );

        // The manifest blob lands first; index.json is the commit point. A
        // blob left by a failed precondition is unreferenced, which layouts
        // allow.
        let path = self.blob_path(&dir, repo, op, &digest)?;
        // Manifests are small: compare, so a damaged copy gets replaced.
        let present = matches!(
            read_limited(&path, desc.size).await,
            Ok(Some(b)) if b == manifest.bytes().as_ref()
        );
        if !present {
            let body: BlobStream = Box::pin(futures::stream::iter([Ok::<_, RegistryError>(
                manifest.bytes().clone(),
            )]));
            self.write_blob(&dir, repo, &desc, body).await?;
        } else {
            self.ensure_layout(&dir, Some(digest.algorithm().as_str()))
                .await
                .map_err(|e| self.err(repo, op, target.clone(), ErrorKind::Io(e)))?;
        }
        let update = index::IndexOp {
            reference: reference.clone(),
            desc,
            precondition,
        };
        index::update(&dir, update)
            .await
            .map_err(|f| self.err(repo, op, target, f.into_kind()))?;
        Ok(PutManifestOutcome {
            subject_indexed: false,
        })
    }

    async fn blob_head(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, RegistryError> {
        let op = Operation::BlobHead;
        let dir = self.dir(repo, op)?;
        let path = self.blob_path(&dir, repo, op, digest)?;
        match tokio::fs::metadata(&path).await {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err(repo, op, Some(digest.to_string()), ErrorKind::Io(e))),
        }
    }

    async fn blob_get(&self, repo: &RepoName, digest: &Digest) -> Result<Blob, RegistryError> {
        let op = Operation::BlobGet;
        let target = Some(digest.to_string());
        let dir = self.dir(repo, op)?;
        let path = self.blob_path(&dir, repo, op, digest)?;
        let file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(self.err(repo, op, target, ErrorKind::NotFound));
            }
            Err(e) => return Err(self.err(repo, op, target, ErrorKind::Io(e))),
        };
        let meta = file
            .metadata()
            .await
            .map_err(|e| self.err(repo, op, target.clone(), ErrorKind::Io(e)))?;
        if !meta.is_file() {
            return Err(self.err(repo, op, target, ErrorKind::NotFound));
        }
        let size = meta.len();
        let (name, repo_s) = (self.name.clone(), repo.as_str().to_string());
        let raw: BlobStream = Box::pin(ReaderStream::new(file).map_err(move |e| {
            RegistryError::new(
                name.clone(),
                repo_s.clone(),
                op,
                target.clone(),
                ErrorKind::Io(e),
            )
        }));
        let stream = verify(
            raw,
            digest.clone(),
            Some(size),
            StreamContext {
                registry: self.name.clone(),
                repo: repo.as_str().to_string(),
            },
        );
        Ok(Blob { size, stream })
    }

    async fn blob_put(
        &self,
        repo: &RepoName,
        desc: &Descriptor,
        body: BlobStream,
    ) -> Result<(), RegistryError> {
        let op = Operation::BlobPut;
        let dir = self.dir(repo, op)?;
        let path = self.blob_path(&dir, repo, op, &desc.digest)?;
        // Content-addressed: an existing file of the right size is this blob.
        if let Ok(m) = tokio::fs::metadata(&path).await
            && m.is_file()
            && m.len() == desc.size
        {
            return Ok(());
        }
        self.write_blob(&dir, repo, desc, body).await?;
        let io_err = |e| self.err(repo, op, Some(desc.digest.to_string()), ErrorKind::Io(e));
        index::ensure_exists(&dir).await.map_err(io_err)
    }

    async fn blob_mount(
        &self,
        repo: &RepoName,
        digest: &Digest,
        from: &RepoName,
    ) -> Result<bool, RegistryError> {
        let op = Operation::BlobMount;
        let target = Some(digest.to_string());
        let io_err = |e: io::Error| self.err(repo, op, target.clone(), ErrorKind::Io(e));
        let src_dir = self.dir(from, op)?;
        let dst_dir = self.dir(repo, op)?;
        let src = self.blob_path(&src_dir, from, op, digest)?;
        let dst = self.blob_path(&dst_dir, repo, op, digest)?;
        match tokio::fs::metadata(&src).await {
            Ok(m) if m.is_file() => {}
            _ => return Ok(false),
        }
        if tokio::fs::try_exists(&dst).await.map_err(io_err)? {
            return Ok(true);
        }
        self.ensure_layout(&dst_dir, Some(digest.algorithm().as_str()))
            .await
            .map_err(io_err)?;
        let alg_dir = dst
            .parent()
            .ok_or_else(|| io_err(io::Error::other("blob path has no parent")))?;
        // Hard link when possible (same file system), else copy; either way
        // through a temp name so the blob appears whole.
        let tmp = TempFile::new(alg_dir);
        if tokio::fs::hard_link(&src, &tmp.path).await.is_err() {
            tokio::fs::copy(&src, &tmp.path).await.map_err(io_err)?;
        }
        tmp.persist(&dst).await.map_err(io_err)?;
        index::ensure_exists(&dst_dir).await.map_err(io_err)?;
        Ok(true)
    }

    async fn tags(&self, repo: &RepoName) -> Result<Vec<String>, RegistryError> {
        let op = Operation::TagList;
        let dir = self.dir(repo, op)?;
        let Some(index) = self.index(&dir, repo, op, None).await? else {
            return Err(self.err(repo, op, None, ErrorKind::NotFound));
        };
        let tags: BTreeSet<String> = index
            .descriptors()
            .filter_map(|d| {
                d.annotations
                    .get(REF_NAME)
                    .and_then(|n| tag_of_ref_name(n))
                    .map(str::to_string)
            })
            .collect();
        Ok(tags.into_iter().collect())
    }

    async fn referrers_api(
        &self,
        _repo: &RepoName,
        _subject: &Digest,
    ) -> Result<Option<Vec<Descriptor>>, RegistryError> {
        Ok(None)
    }

    async fn referrers_support(&self, _repo: &RepoName) -> Result<ReferrersSupport, RegistryError> {
        Ok(ReferrersSupport::Unsupported)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contained_join_refuses_escapes() {
        let base = Path::new("/base");
        assert_eq!(
            contained_join(base, ["a", "b"]),
            Some(PathBuf::from("/base/a/b"))
        );
        for bad in [
            vec![".."],
            vec!["a", ".."],
            vec!["."],
            vec![""],
            vec!["/etc"],
            vec!["a/b"],
            vec!["..\\x"],
            vec!["x\0y"],
        ] {
            assert_eq!(contained_join(base, bad.clone()), None, "{bad:?}");
        }
    }

    #[test]
    fn ref_names_map_to_tags() {
        assert_eq!(tag_of_ref_name("v1"), Some("v1"));
        assert_eq!(tag_of_ref_name("example.com/app:v2"), Some("v2"));
        assert_eq!(tag_of_ref_name("localhost:5000/app:v3"), Some("v3"));
        assert_eq!(tag_of_ref_name("localhost:5000/app"), None);
        assert_eq!(
            tag_of_ref_name(&format!("app@{}", Digest::sha256(b"x"))),
            None
        );
        assert_eq!(tag_of_ref_name(":v1"), None);
        assert_eq!(tag_of_ref_name("../../x"), None);
        assert_eq!(tag_of_ref_name(""), None);
    }
}
