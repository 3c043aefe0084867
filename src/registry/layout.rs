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
//! referrers fallback tag (`sha256-<hex>`) is an ordinary tag here. Reading
//! referrers merges the fallback tag with a subject scan of `index.json`
//! (spec notes §7), so layouts written by oras-go, which keep no fallback
//! tags, lose none (see `layout/referrers.rs`).
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
//! Layouts are bounded (see `layout/fs.rs`): no symbolic link below the root
//! is followed out of it, FIFOs and devices are refused instead of blocking,
//! an existing blob counts only when its size (and, for small blobs, its
//! digest) checks out, and temp files of killed writers are removed.
//!
//! References: image-spec `image-layout.md`; spec notes §7.

mod fs;
mod index;
mod referrers;

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;

pub use self::fs::UnsafePath;
pub(crate) use self::fs::contained_join;
use self::fs::{TempFile, blocking, ensure_layout, present_size};
use super::stream::{StreamContext, verify};
use super::{
    Blob, BlobStream, ErrorKind, FetchedManifest, Operation, Precondition, PutManifestOutcome,
    ReferrersSupport, Registry, RegistryError,
};
use crate::oci::manifest::MAX_MANIFEST_SIZE;
use crate::oci::{
    Descriptor, Digest, Digester, Location, Manifest, ManifestError, Reference, RepoName, Tag,
    layout_name,
};

/// The annotation that names a tag in `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Name of the lock file that serialises `index.json` updates between
/// processes (an extra file, which the layout spec allows).
pub const LOCK_FILE: &str = ".ocimirror-index.lock";

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

/// Why `location` cannot be read from as a source, when it is a layout
/// directory without an `index.json` (a typo'd path would otherwise read
/// as "tag not found" or as an empty repository).
pub fn missing_source_layout(location: &Location) -> Option<String> {
    match location {
        Location::Layout(dir) if !dir.join(index::INDEX_JSON).is_file() => Some(format!(
            "source {}: no OCI layout there ({} {})",
            layout_name(dir),
            dir.display(),
            if dir.is_dir() {
                "has no index.json"
            } else {
                "does not exist"
            }
        )),
        _ => None,
    }
}

impl LayoutRegistry {
    /// A layout registry rooted at `root`. Nothing is touched until the first
    /// write, which creates the directories it needs.
    pub fn open(root: impl Into<PathBuf>) -> LayoutRegistry {
        let root = root.into();
        let name = crate::oci::layout_name(&root);
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

    /// `path` (built under the root) with its links resolved, refused when
    /// one leads out of the root.
    async fn confine(&self, path: PathBuf) -> io::Result<PathBuf> {
        let root = self.root.clone();
        blocking(move || fs::confine(&root, &path)).await
    }

    /// The layout directory of `repo`, resolved inside the root.
    async fn dir(&self, repo: &RepoName, op: Operation) -> Result<PathBuf, RegistryError> {
        let path = if repo.is_root() {
            Some(self.root.clone())
        } else {
            contained_join(&self.root, repo.as_str().split('/'))
        };
        let Some(path) = path else {
            return Err(self.err(
                repo,
                op,
                None,
                ErrorKind::InvalidResponse(format!(
                    "repository {:?} does not map to a directory inside the layout",
                    repo.as_str()
                )),
            ));
        };
        self.confine(path)
            .await
            .map_err(|e| self.err(repo, op, None, ErrorKind::Io(e)))
    }

    /// The file of blob `digest` in `dir` (from [`Self::dir`]), resolved
    /// inside the root.
    async fn blob_path(
        &self,
        dir: &Path,
        repo: &RepoName,
        op: Operation,
        digest: &Digest,
    ) -> Result<PathBuf, RegistryError> {
        let target = Some(digest.to_string());
        let path = contained_join(dir, ["blobs", digest.algorithm().as_str(), digest.hex()])
            .ok_or_else(|| {
                self.err(
                    repo,
                    op,
                    target.clone(),
                    ErrorKind::InvalidResponse("digest does not map to a blob path".into()),
                )
            })?;
        self.confine(path)
            .await
            .map_err(|e| self.err(repo, op, target, ErrorKind::Io(e)))
    }

    /// Reads `index.json` (cached); `None` when it does not exist.
    async fn index(
        &self,
        dir: &Path,
        repo: &RepoName,
        op: Operation,
        target: Option<String>,
    ) -> Result<Option<std::sync::Arc<index::IndexFile>>, RegistryError> {
        index::load(dir)
            .await
            .map_err(|f| self.err(repo, op, target, f.into_kind()))
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
        let path = self.blob_path(dir, repo, op, digest).await?;
        let target = Some(digest.to_string());
        let bytes = blocking(move || fs::read_limited(&path, MAX_MANIFEST_SIZE as u64))
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

    /// Writes blob file `path` (from [`Self::blob_path`]) of layout `dir`
    /// atomically from `body`, checking digest and size as it streams.
    async fn write_blob(
        &self,
        dir: &Path,
        path: &Path,
        repo: &RepoName,
        desc: &Descriptor,
        mut body: BlobStream,
    ) -> Result<(), RegistryError> {
        let op = Operation::BlobPut;
        let target = Some(desc.digest.to_string());
        let io_err = |e: io::Error| self.err(repo, op, target.clone(), ErrorKind::Io(e));
        let alg_dir = path
            .parent()
            .ok_or_else(|| io_err(io::Error::other("blob path has no parent")))?
            .to_path_buf();
        let (dir_owned, alg) = (dir.to_path_buf(), desc.digest.algorithm().as_str());
        let (tmp, file) = blocking(move || {
            ensure_layout(&dir_owned, Some(alg))?;
            TempFile::create(&alg_dir)
        })
        .await
        .map_err(io_err)?;
        let mut file = tokio::fs::File::from_std(file);
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
        let path = path.to_path_buf();
        blocking(move || tmp.persist(&path)).await.map_err(io_err)
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
        let dir = self.dir(repo, op).await?;
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
        let dir = self.dir(repo, op).await?;
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
        let path = self.blob_path(&dir, repo, op, &digest).await?;
        let (check, bytes, size) = (path.clone(), manifest.bytes().clone(), desc.size);
        // Manifests are small: compare, so a damaged copy gets replaced.
        let present =
            blocking(move || Ok(fs::read_limited(&check, size)?.is_some_and(|b| b == bytes)))
                .await
                .unwrap_or(false);
        if !present {
            let body: BlobStream = Box::pin(futures::stream::iter([Ok::<_, RegistryError>(
                manifest.bytes().clone(),
            )]));
            self.write_blob(&dir, &path, repo, &desc, body).await?;
        } else {
            let (d, alg) = (dir.clone(), digest.algorithm().as_str());
            blocking(move || ensure_layout(&d, Some(alg)))
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
        let dir = self.dir(repo, op).await?;
        let path = self.blob_path(&dir, repo, op, digest).await?;
        let d = digest.clone();
        blocking(move || present_size(&path, &d, None))
            .await
            .map_err(|e| self.err(repo, op, Some(digest.to_string()), ErrorKind::Io(e)))
    }

    async fn blob_get(&self, repo: &RepoName, digest: &Digest) -> Result<Blob, RegistryError> {
        let op = Operation::BlobGet;
        let target = Some(digest.to_string());
        let dir = self.dir(repo, op).await?;
        let path = self.blob_path(&dir, repo, op, digest).await?;
        let Some((file, size)) = blocking(move || fs::open_regular(&path))
            .await
            .map_err(|e| self.err(repo, op, target.clone(), ErrorKind::Io(e)))?
        else {
            return Err(self.err(repo, op, target, ErrorKind::NotFound));
        };
        let file = tokio::fs::File::from_std(file);
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
        let io_err = |e| self.err(repo, op, Some(desc.digest.to_string()), ErrorKind::Io(e));
        let dir = self.dir(repo, op).await?;
        let path = self.blob_path(&dir, repo, op, &desc.digest).await?;
        // Content-addressed: an existing file that checks out is this blob;
        // anything else there (truncated, damaged, a FIFO) is replaced.
        let (check, d, size) = (path.clone(), desc.digest.clone(), desc.size);
        if let Ok(Some(_)) = blocking(move || present_size(&check, &d, Some(size))).await {
            return Ok(());
        }
        self.write_blob(&dir, &path, repo, desc, body).await?;
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
        let src_dir = self.dir(from, op).await?;
        let dst_dir = self.dir(repo, op).await?;
        let src = self.blob_path(&src_dir, from, op, digest).await?;
        let dst = self.blob_path(&dst_dir, repo, op, digest).await?;
        let (d, dir) = (digest.clone(), dst_dir.clone());
        let mounted = blocking(move || {
            let Some(len) = present_size(&src, &d, None)? else {
                return Ok(false);
            };
            if present_size(&dst, &d, Some(len))?.is_some() {
                return Ok(true);
            }
            ensure_layout(&dir, Some(d.algorithm().as_str()))?;
            let alg_dir = dst
                .parent()
                .ok_or_else(|| io::Error::other("blob path has no parent"))?;
            // Hard link when possible (same file system), else copy; either
            // way through a temp name so the blob appears whole.
            let link = TempFile::name_in(alg_dir);
            if std::fs::hard_link(&src, &link.path).is_ok() {
                link.persist(&dst)?;
                return Ok(true);
            }
            let Some((mut source, _)) = fs::open_regular(&src)? else {
                return Ok(false);
            };
            let (tmp, mut file) = TempFile::create(alg_dir)?;
            io::copy(&mut source, &mut file)?;
            file.sync_all()?;
            drop(file);
            tmp.persist(&dst)?;
            Ok(true)
        })
        .await
        .map_err(io_err)?;
        if mounted {
            index::ensure_exists(&dst_dir).await.map_err(io_err)?;
        }
        Ok(mounted)
    }

    async fn tags(&self, repo: &RepoName) -> Result<Vec<String>, RegistryError> {
        let op = Operation::TagList;
        let dir = self.dir(repo, op).await?;
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

    /// A layout has no referrers API; this answers what one would: the
    /// subject scan merged with the fallback tag (see `layout/referrers.rs`).
    async fn referrers_api(
        &self,
        repo: &RepoName,
        subject: &Digest,
    ) -> Result<Option<Vec<Descriptor>>, RegistryError> {
        self.referrers(repo, subject).await.map(Some)
    }

    /// `Unsupported`: writers keep maintaining fallback tags in a layout
    /// (spec notes §7), so other tools find the referrers too.
    async fn referrers_support(&self, _repo: &RepoName) -> Result<ReferrersSupport, RegistryError> {
        Ok(ReferrersSupport::Unsupported)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
