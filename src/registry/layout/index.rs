//! `index.json` of a layout: parsing that keeps what it does not know, the
//! tag/untagged update rules, a per-directory cache and group commit.
//!
//! Writers queue their update and take the directory's lock; whoever holds
//! the lock applies every queued update and writes `index.json` once, so
//! concurrent pushes share one rewrite and one fsync. The parsed file is
//! cached per directory and keyed by the file's identity (it is always
//! replaced by rename, so its inode changes with every version).

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex as StdMutex};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::oneshot;

use super::fs::{blocking, open_lock_file, open_regular, write_atomic};
use super::{LOCK_FILE, REF_NAME, tag_of_ref_name};
use crate::oci::media_type as mt;
use crate::oci::{Descriptor, Digest, Reference};
use crate::registry::{ErrorKind, Precondition};

/// The layout's top-level index, the file that makes a directory a layout.
pub(crate) const INDEX_JSON: &str = "index.json";

/// The most bytes of `index.json` read (it lists every manifest).
const MAX_INDEX_SIZE: u64 = 64 * 1024 * 1024;

/// Why an index read or update failed; cloneable so one failed batch can
/// answer every writer in it.
#[derive(Clone, Debug)]
pub(super) enum IndexFailure {
    /// The update's precondition did not hold.
    PreconditionFailed,
    /// File system error.
    Io(io::ErrorKind, String),
    /// `index.json` is not an OCI index.
    Invalid(String),
}

impl IndexFailure {
    fn io(e: &io::Error) -> Self {
        IndexFailure::Io(e.kind(), e.to_string())
    }

    /// The registry error kind for this failure.
    pub(super) fn into_kind(self) -> ErrorKind {
        match self {
            IndexFailure::PreconditionFailed => ErrorKind::PreconditionFailed,
            IndexFailure::Io(kind, msg) => ErrorKind::Io(io::Error::new(kind, msg)),
            IndexFailure::Invalid(msg) => ErrorKind::InvalidResponse(msg),
        }
    }
}

/// One version of `index.json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    ino: u64,
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Stamp {
        #[cfg(unix)]
        let ino = std::os::unix::fs::MetadataExt::ino(m);
        #[cfg(not(unix))]
        let ino = 0;
        Stamp {
            len: m.len(),
            modified: m.modified().ok(),
            ino,
        }
    }
}

/// An entry as written, and its parsed view when it parses (entries with
/// unknown digest algorithms are kept but not used).
#[derive(Clone, Debug)]
struct Entry {
    raw: Value,
    desc: Option<Descriptor>,
}

impl Entry {
    fn new(desc: Descriptor) -> Result<Entry, serde_json::Error> {
        Ok(Entry {
            raw: serde_json::to_value(&desc)?,
            desc: Some(desc),
        })
    }
}

#[derive(Deserialize)]
struct RawIndex {
    #[serde(default)]
    manifests: Vec<Value>,
    #[serde(flatten)]
    other: Map<String, Value>,
}

#[derive(Serialize)]
struct OutIndex<'a> {
    #[serde(flatten)]
    other: &'a Map<String, Value>,
    manifests: Vec<&'a Value>,
}

/// A parsed `index.json`; a rewrite keeps unknown fields and entries.
#[derive(Clone, Debug)]
pub(super) struct IndexFile {
    entries: Vec<Entry>,
    other: Map<String, Value>,
}

/// One queued change to `index.json`.
#[derive(Clone, Debug)]
pub(super) struct IndexOp {
    /// Tag to point at `desc`, or the digest to list untagged.
    pub reference: Reference,
    /// The manifest's plain descriptor.
    pub desc: Descriptor,
    /// Checked against the entry the reference names now.
    pub precondition: Precondition,
}

impl IndexFile {
    pub(super) fn empty() -> Self {
        let mut other = Map::new();
        other.insert("schemaVersion".into(), Value::from(2));
        other.insert("mediaType".into(), Value::from(mt::OCI_INDEX));
        IndexFile {
            entries: Vec::new(),
            other,
        }
    }

    fn parse(bytes: &[u8]) -> serde_json::Result<Self> {
        let raw: RawIndex = serde_json::from_slice(bytes)?;
        let entries = raw
            .manifests
            .into_iter()
            .map(|v| Entry {
                desc: serde_json::from_value(v.clone()).ok(),
                raw: v,
            })
            .collect();
        Ok(IndexFile {
            entries,
            other: raw.other,
        })
    }

    pub(super) fn to_bytes(&self) -> serde_json::Result<Vec<u8>> {
        serde_json::to_vec(&OutIndex {
            other: &self.other,
            manifests: self.entries.iter().map(|e| &e.raw).collect(),
        })
    }

    /// Entries that parse as descriptors.
    pub(super) fn descriptors(&self) -> impl Iterator<Item = &Descriptor> {
        self.entries.iter().filter_map(|e| e.desc.as_ref())
    }

    /// The entry a tag names: an exact ref.name first, else a full reference
    /// ending in `:<tag>` (as regclient accepts).
    pub(super) fn find_tag(&self, tag: &str) -> Option<&Descriptor> {
        let mut fallback = None;
        for d in self.descriptors() {
            match d.annotations.get(REF_NAME) {
                Some(name) if name == tag => return Some(d),
                Some(name) if fallback.is_none() && tag_of_ref_name(name) == Some(tag) => {
                    fallback = Some(d);
                }
                _ => {}
            }
        }
        fallback
    }

    pub(super) fn find_digest(&self, digest: &Digest) -> Option<&Descriptor> {
        self.descriptors().find(|d| &d.digest == digest)
    }

    /// Applies one update. `Ok(false)` when nothing changed.
    fn apply(&mut self, op: &IndexOp) -> Result<bool, IndexFailure> {
        let current = match &op.reference {
            Reference::Tag(tag) => self.find_tag(tag.as_str()).cloned(),
            Reference::Digest(d) => self.find_digest(d).cloned(),
        };
        let holds = match (&op.precondition, &current) {
            (Precondition::None, _) => true,
            (Precondition::IfNoneMatch, cur) => cur.is_none(),
            (Precondition::IfMatch(etag), Some(cur)) => {
                etag.trim().trim_matches('"') == cur.digest.to_string()
            }
            (Precondition::IfMatch(_), None) => false,
        };
        if !holds {
            return Err(IndexFailure::PreconditionFailed);
        }
        let json_err = |e: serde_json::Error| IndexFailure::Invalid(e.to_string());
        let digest = &op.desc.digest;
        let tag = match &op.reference {
            Reference::Digest(_) => {
                if current.is_some() {
                    return Ok(false);
                }
                self.entries
                    .push(Entry::new(op.desc.clone()).map_err(json_err)?);
                return Ok(true);
            }
            Reference::Tag(tag) => tag.as_str(),
        };
        let named = |d: &Descriptor| d.annotations.get(REF_NAME).is_some_and(|n| n == tag);
        let untagged = |d: &Descriptor| !d.annotations.contains_key(REF_NAME);
        // Re-pushing the same content changes nothing (and keeps whatever
        // else another tool put on the entry).
        let unchanged = {
            let mut same = self.descriptors().filter(|d| named(d));
            matches!((same.next(), same.next()), (Some(d), None) if &d.digest == digest)
                && !self
                    .descriptors()
                    .any(|d| untagged(d) && &d.digest == digest)
        };
        if unchanged {
            return Ok(false);
        }
        // Drop the tag's old entry and any untagged entry of this digest.
        self.entries.retain(|e| match &e.desc {
            Some(d) => !(named(d) || (untagged(d) && &d.digest == digest)),
            None => true,
        });
        let mut desc = op.desc.clone();
        desc.annotations.insert(REF_NAME.into(), tag.into());
        self.entries.push(Entry::new(desc).map_err(json_err)?);
        // The previous target stays discoverable as an untagged entry.
        if let Some(old) = current
            && &old.digest != digest
            && self.find_digest(&old.digest).is_none()
        {
            let plain = Descriptor::new(old.media_type, old.digest, old.size);
            self.entries.push(Entry::new(plain).map_err(json_err)?);
        }
        Ok(true)
    }
}

struct Pending {
    id: u64,
    op: IndexOp,
    tx: oneshot::Sender<Result<(), IndexFailure>>,
}

/// What the process shares about one layout directory.
#[derive(Default)]
struct DirShared {
    /// Held while `index.json` is being updated.
    write: Arc<tokio::sync::Mutex<()>>,
    /// Updates waiting for the next writer.
    queue: StdMutex<Vec<Pending>>,
    /// The last version of `index.json` read or written.
    cache: StdMutex<Option<(Stamp, Arc<IndexFile>)>>,
    /// Referrers by subject, found by scanning the manifests of one
    /// version of `index.json` (the `Arc` it was built from).
    subjects: StdMutex<Option<(Arc<IndexFile>, Arc<SubjectMap>)>>,
}

/// Referrer descriptors by subject digest.
pub(super) type SubjectMap = HashMap<Digest, Vec<Descriptor>>;

/// The subject map built for exactly this version of `index.json`, if any.
pub(super) async fn cached_subjects(dir: &Path, index: &Arc<IndexFile>) -> Option<Arc<SubjectMap>> {
    let sh = shared(dir).await.ok().flatten()?;
    let subjects = sh.subjects.lock().unwrap_or_else(|p| p.into_inner());
    match subjects.as_ref() {
        Some((built_from, map)) if Arc::ptr_eq(built_from, index) => Some(map.clone()),
        _ => None,
    }
}

/// Remembers the subject map built for this version of `index.json`.
pub(super) async fn store_subjects(dir: &Path, index: &Arc<IndexFile>, map: Arc<SubjectMap>) {
    if let Ok(Some(sh)) = shared(dir).await {
        *sh.subjects.lock().unwrap_or_else(|p| p.into_inner()) = Some((index.clone(), map));
    }
}

/// One entry per layout directory (canonical path), shared by every
/// `LayoutRegistry` in the process.
static DIRS: LazyLock<StdMutex<HashMap<PathBuf, Arc<DirShared>>>> =
    LazyLock::new(|| StdMutex::new(HashMap::new()));

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// The shared state of `dir`, or `None` when it does not exist.
async fn shared(dir: &Path) -> io::Result<Option<Arc<DirShared>>> {
    let key = match tokio::fs::canonicalize(dir).await {
        Ok(k) => k,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut map = DIRS.lock().unwrap_or_else(|p| p.into_inner());
    Ok(Some(map.entry(key).or_default().clone()))
}

/// Reads `dir/index.json` (through the cache); `None` when it does not exist.
pub(super) async fn load(dir: &Path) -> Result<Option<Arc<IndexFile>>, IndexFailure> {
    let sh = shared(dir).await.map_err(|e| IndexFailure::io(&e))?;
    load_with(dir, sh.as_deref()).await
}

async fn load_with(
    dir: &Path,
    sh: Option<&DirShared>,
) -> Result<Option<Arc<IndexFile>>, IndexFailure> {
    let path = dir.join(INDEX_JSON);
    let open = path.clone();
    let Some((file, _)) = blocking(move || open_regular(&open))
        .await
        .map_err(|e| IndexFailure::io(&e))?
    else {
        return Ok(None);
    };
    // Stamp and content come from the same open file, so they agree.
    let stamp = Stamp::of(&file.metadata().map_err(|e| IndexFailure::io(&e))?);
    if let Some(sh) = sh {
        let cache = sh.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((s, index)) = cache.as_ref()
            && *s == stamp
        {
            return Ok(Some(index.clone()));
        }
    }
    let bytes = blocking(move || {
        let mut bytes = Vec::new();
        io::Read::read_to_end(&mut io::Read::take(file, MAX_INDEX_SIZE + 1), &mut bytes)?;
        Ok(bytes)
    })
    .await
    .map_err(|e| IndexFailure::io(&e))?;
    if bytes.len() as u64 > MAX_INDEX_SIZE {
        return Err(IndexFailure::Invalid(format!(
            "{} is over {MAX_INDEX_SIZE} bytes",
            path.display()
        )));
    }
    let index = Arc::new(IndexFile::parse(&bytes).map_err(|e| {
        IndexFailure::Invalid(format!("{} is not an OCI index: {e}", path.display()))
    })?);
    if let Some(sh) = sh {
        *sh.cache.lock().unwrap_or_else(|p| p.into_inner()) = Some((stamp, index.clone()));
    }
    Ok(Some(index))
}

/// Holds a layout directory's index lock: the in-process mutex, then an
/// exclusive advisory lock on [`LOCK_FILE`] for other processes.
struct Guard {
    _file: std::fs::File,
    _local: tokio::sync::OwnedMutexGuard<()>,
}

/// Takes the index lock of `dir`. The in-process mutex comes first, so this
/// process never queues on its own file lock.
async fn lock(dir: &Path, sh: &DirShared) -> io::Result<Guard> {
    let local = sh.write.clone().lock_owned().await;
    let path = dir.join(LOCK_FILE);
    let file = blocking(move || {
        let file = open_lock_file(&path)?;
        file.lock()?;
        Ok(file)
    })
    .await?;
    Ok(Guard {
        _file: file,
        _local: local,
    })
}

async fn existing_shared(dir: &Path) -> io::Result<Arc<DirShared>> {
    shared(dir).await?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} does not exist", dir.display()),
        )
    })
}

/// Writes an empty `index.json` into `dir` (which must exist) when missing.
pub(super) async fn ensure_exists(dir: &Path) -> io::Result<()> {
    let sh = existing_shared(dir).await?;
    let _guard = lock(dir, &sh).await?;
    let path = dir.join(INDEX_JSON);
    blocking(move || {
        if std::fs::symlink_metadata(&path).is_err() {
            let bytes = IndexFile::empty().to_bytes().map_err(io::Error::other)?;
            write_atomic(&path, &bytes)?;
        }
        Ok(())
    })
    .await
}

/// Applies `op` to `dir/index.json` (`dir` must exist), together with any
/// updates queued by other writers meanwhile.
pub(super) async fn update(dir: &Path, op: IndexOp) -> Result<(), IndexFailure> {
    let sh = existing_shared(dir)
        .await
        .map_err(|e| IndexFailure::io(&e))?;
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = oneshot::channel();
    sh.queue
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Pending { id, op, tx });
    let guard = match lock(dir, &sh).await {
        Ok(g) => g,
        Err(e) => {
            // Withdraw the update unless a writer already took it.
            let withdrawn = {
                let mut queue = sh.queue.lock().unwrap_or_else(|p| p.into_inner());
                let pos = queue.iter().position(|p| p.id == id);
                pos.map(|pos| queue.remove(pos)).is_some()
            };
            if withdrawn {
                return Err(IndexFailure::io(&e));
            }
            return rx.await.unwrap_or(Err(IndexFailure::io(&e)));
        }
    };
    // A writer that held the lock before us may have done our update.
    if let Ok(result) = rx.try_recv() {
        return result;
    }
    let batch = std::mem::take(&mut *sh.queue.lock().unwrap_or_else(|p| p.into_inner()));
    if batch.is_empty() {
        // Not expected: every writer answers its batch before unlocking, so
        // our update was answered above or is queued. Never wait locked.
        drop(guard);
    } else {
        // Its own task, so that dropping this future half-way (a cancelled
        // caller) still answers every writer in the batch.
        let dir = dir.to_path_buf();
        let sh = sh.clone();
        tokio::spawn(async move {
            let results = commit(&dir, &sh, &batch).await;
            for (pending, result) in batch.into_iter().zip(results) {
                let _ = pending.tx.send(result);
            }
            drop(guard);
        });
    }
    rx.await
        .unwrap_or_else(|_| Err(IndexFailure::Invalid("index update was lost".into())))
}

/// Applies `batch` in order and writes `index.json` once; one result per
/// update. Call with the lock held.
async fn commit(dir: &Path, sh: &DirShared, batch: &[Pending]) -> Vec<Result<(), IndexFailure>> {
    let current = match load_with(dir, Some(sh)).await {
        Ok(c) => c,
        Err(e) => return vec![Err(e); batch.len()],
    };
    let mut index = current.as_deref().cloned().unwrap_or_else(IndexFile::empty);
    let mut changed = false;
    let mut results: Vec<Result<(), IndexFailure>> = batch
        .iter()
        .map(|p| index.apply(&p.op).map(|c| changed |= c))
        .collect();
    if !changed {
        return results;
    }
    let path = dir.join(INDEX_JSON);
    let written = match index.to_bytes() {
        Ok(bytes) => {
            blocking(move || {
                write_atomic(&path, &bytes)?;
                std::fs::metadata(&path)
            })
            .await
        }
        Err(e) => Err(io::Error::other(e)),
    };
    match written {
        Ok(meta) => {
            *sh.cache.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((Stamp::of(&meta), Arc::new(index)));
        }
        Err(e) => {
            let failure = IndexFailure::io(&e);
            for r in results.iter_mut().filter(|r| r.is_ok()) {
                *r = Err(failure.clone());
            }
        }
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::Tag;

    fn entry(d: &Digest, name: Option<&str>) -> Value {
        let mut desc = Descriptor::new(mt::OCI_MANIFEST, d.clone(), 1);
        if let Some(n) = name {
            desc.annotations.insert(REF_NAME.into(), n.into());
        }
        serde_json::to_value(desc).unwrap()
    }

    fn index(entries: Vec<Value>) -> IndexFile {
        let v = serde_json::json!({"schemaVersion": 2, "x-extra": true, "manifests": entries});
        IndexFile::parse(&serde_json::to_vec(&v).unwrap()).unwrap()
    }

    fn op(reference: Reference, d: &Digest, precondition: Precondition) -> IndexOp {
        IndexOp {
            reference,
            desc: Descriptor::new(mt::OCI_MANIFEST, d.clone(), 1),
            precondition,
        }
    }

    fn tag(t: &str) -> Reference {
        Reference::Tag(Tag::new(t).unwrap())
    }

    #[test]
    fn tag_lookup_prefers_exact_names_and_skips_unknown_entries() {
        let (d1, d2) = (Digest::sha256(b"1"), Digest::sha256(b"2"));
        let unknown = serde_json::json!({"mediaType": "x", "digest": "blake3:00", "size": 1});
        let i = index(vec![
            entry(&d1, Some("example.com/app:v1")),
            entry(&d2, Some("v1")),
            unknown.clone(),
        ]);
        assert_eq!(i.find_tag("v1").unwrap().digest, d2);
        let i = index(vec![entry(&d1, Some("example.com/app:v1")), unknown]);
        assert_eq!(i.find_tag("v1").unwrap().digest, d1);
        assert!(i.find_tag("v2").is_none());
        // A rewrite keeps unknown fields and entries.
        let back: Value = serde_json::from_slice(&i.to_bytes().unwrap()).unwrap();
        assert_eq!(back["x-extra"], true);
        assert_eq!(back["manifests"][1]["digest"], "blake3:00");
    }

    #[test]
    fn batched_updates_apply_in_order_with_their_preconditions() {
        let (a, b) = (Digest::sha256(b"a"), Digest::sha256(b"b"));
        let mut i = IndexFile::empty();
        assert!(
            i.apply(&op(Reference::Digest(a.clone()), &a, Precondition::None))
                .unwrap()
        );
        assert!(
            !i.apply(&op(Reference::Digest(a.clone()), &a, Precondition::None))
                .unwrap()
        );
        // Tagging replaces the untagged entry of the same digest.
        assert!(
            i.apply(&op(tag("t"), &a, Precondition::IfNoneMatch))
                .unwrap()
        );
        assert_eq!(i.descriptors().count(), 1);
        assert!(!i.apply(&op(tag("t"), &a, Precondition::None)).unwrap());
        assert!(matches!(
            i.apply(&op(tag("t"), &b, Precondition::IfNoneMatch)),
            Err(IndexFailure::PreconditionFailed)
        ));
        assert!(matches!(
            i.apply(&op(tag("t"), &b, Precondition::IfMatch(b.to_string()))),
            Err(IndexFailure::PreconditionFailed)
        ));
        // Retagging keeps the old target as an untagged entry.
        assert!(
            i.apply(&op(tag("t"), &b, Precondition::IfMatch(a.to_string())))
                .unwrap()
        );
        assert_eq!(i.find_tag("t").unwrap().digest, b);
        let old = i.find_digest(&a).unwrap();
        assert!(old.annotations.is_empty());
        assert_eq!(i.descriptors().count(), 2);
    }
}
