//! The default object store: a folder on the local disk (`OBJECT_STORE=file:<dir>`).
//!
//! A key's segments are the path under the folder (`prescriptions/<id>`). An object is
//! written to `<dir>/.partial/<random>.part`, flushed to disk, and only then renamed to its
//! final name: a rename within one file system is atomic, so a crash or a failed upload
//! never leaves half a file under a key. Partial files a crash left behind are deleted when
//! the store next opens, once they are an hour old (another node sharing the folder may
//! still be writing a younger one). Folders are created when first needed, so a server
//! that never stores anything leaves nothing on disk.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::{ChunkSource, ObjectBody, ObjectError, ObjectKey, Objects};

/// The folder of files being written, under the store's root. Keys cannot name it (no key
/// segment starts with a dot).
const PARTIAL_DIR: &str = ".partial";
/// Partial files older than this are a crash's leftovers.
const PARTIAL_MAX_AGE: Duration = Duration::from_secs(3600);
/// The most a file's writer buffers (tokio hands each write to the blocking pool as a copy
/// of at most this many bytes; chunks from a request are smaller).
const WRITE_BUFFER: usize = 64 * 1024;
/// Bytes per chunk when an object is read back.
const READ_CHUNK: usize = 64 * 1024;

/// Objects as files under one folder.
#[derive(Debug)]
pub struct LocalFolder {
    root: PathBuf,
}

impl LocalFolder {
    /// A store rooted at `root` (created when first written to); deletes stale partial
    /// files left by a crash.
    pub fn new(root: PathBuf) -> Self {
        let store = Self { root };
        match store.sweep_partials(SystemTime::now()) {
            Ok(0) => {}
            Ok(n) => tracing::warn!(files = n, "deleted partial uploads left by a crash"),
            Err(e) => tracing::warn!(error = %e, "could not sweep partial uploads"),
        }
        store
    }

    /// The folder this store writes under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, key: &ObjectKey) -> PathBuf {
        let mut path = self.root.clone();
        path.extend(key.segments());
        path
    }

    /// Deletes partial files older than [`PARTIAL_MAX_AGE`]; returns how many.
    fn sweep_partials(&self, now: SystemTime) -> io::Result<usize> {
        let entries = match std::fs::read_dir(self.root.join(PARTIAL_DIR)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut deleted = 0;
        for entry in entries {
            let entry = entry?;
            let modified = entry.metadata()?.modified()?;
            let age = now.duration_since(modified).unwrap_or_default();
            if age > PARTIAL_MAX_AGE && std::fs::remove_file(entry.path()).is_ok() {
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}

/// Writes every chunk of `source` to a new file at `path`, then flushes it to disk;
/// returns the bytes written.
async fn write_file(path: &Path, mut source: ChunkSource<'_>) -> Result<u64, ObjectError> {
    let mut out = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .await?;
    out.set_max_buf_size(WRITE_BUFFER);
    let mut written = 0u64;
    while let Some(chunk) = source.next().await {
        let chunk = chunk.map_err(|_| ObjectError::SourceAborted)?;
        out.write_all(&chunk).await?;
        written += chunk.len() as u64;
    }
    out.flush().await?;
    out.sync_all().await?;
    Ok(written)
}

/// Makes a rename in `dir` durable (best effort: not every file system can sync a folder).
async fn sync_dir(dir: &Path) {
    if let Ok(dir) = tokio::fs::File::open(dir).await {
        let _ = dir.sync_all().await;
    }
}

#[async_trait::async_trait(?Send)]
impl Objects for LocalFolder {
    async fn put(
        &self,
        key: &ObjectKey,
        _content_type: &str,
        source: ChunkSource<'_>,
    ) -> Result<u64, ObjectError> {
        let partial_dir = self.root.join(PARTIAL_DIR);
        tokio::fs::create_dir_all(&partial_dir).await?;
        let partial = partial_dir.join(format!("{}.part", uuid::Uuid::now_v7()));
        let target = self.path_of(key);
        let written = async {
            let written = write_file(&partial, source).await?;
            if let Some(parent) = target.parent() {
                tokio::fs::create_dir_all(parent).await?;
            }
            tokio::fs::rename(&partial, &target).await?;
            Ok::<_, ObjectError>(written)
        }
        .await;
        match written {
            Ok(written) => {
                if let Some(parent) = target.parent() {
                    sync_dir(parent).await;
                }
                Ok(written)
            }
            Err(e) => {
                if let Err(rm) = tokio::fs::remove_file(&partial).await {
                    if rm.kind() != io::ErrorKind::NotFound {
                        tracing::warn!(error = %rm, "could not delete a partial upload");
                    }
                }
                Err(e)
            }
        }
    }

    async fn get(&self, key: &ObjectKey) -> Result<Option<ObjectBody>, ObjectError> {
        match tokio::fs::File::open(self.path_of(key)).await {
            Ok(file) => {
                let stream = tokio_util::io::ReaderStream::with_capacity(file, READ_CHUNK)
                    .map(|chunk| chunk.map_err(ObjectError::from));
                Ok(Some(Box::pin(stream)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), ObjectError> {
        match tokio::fs::remove_file(self.path_of(key)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use futures_util::stream;

    use super::super::SourceAborted;

    fn temp_root() -> PathBuf {
        std::env::temp_dir().join(format!("medify-objects-unit-{}", uuid::Uuid::now_v7()))
    }

    async fn read_all(store: &LocalFolder, key: &ObjectKey) -> Option<Vec<u8>> {
        let mut body = store.get(key).await.expect("get")?;
        let mut out = Vec::new();
        while let Some(chunk) = body.next().await {
            out.extend_from_slice(&chunk.expect("chunk"));
        }
        Some(out)
    }

    fn files_under(dir: &Path) -> Vec<PathBuf> {
        let mut found = Vec::new();
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    found.extend(files_under(&path));
                } else {
                    found.push(path);
                }
            }
        }
        found
    }

    #[actix_web::test]
    async fn a_failed_write_leaves_nothing_and_a_good_one_reads_back() {
        let root = temp_root();
        let store = LocalFolder::new(root.clone());
        let key = ObjectKey::parse("prescriptions/one").expect("key");

        let mut failing = std::pin::pin!(stream::iter(vec![
            Ok(Bytes::from_static(b"half of ")),
            Err(SourceAborted),
        ]));
        let err = store
            .put(&key, "application/pdf", failing.as_mut())
            .await
            .expect_err("the source failed");
        assert!(matches!(err, ObjectError::SourceAborted), "{err}");
        assert_eq!(files_under(&root), Vec::<PathBuf>::new());
        assert!(store.get(&key).await.expect("get").is_none());

        let mut good = std::pin::pin!(stream::iter(vec![
            Ok(Bytes::from_static(b"%PDF-1.7 ")),
            Ok(Bytes::from_static(b"the rest")),
        ]));
        let n = store
            .put(&key, "application/pdf", good.as_mut())
            .await
            .expect("put");
        assert_eq!(n, 17);
        assert_eq!(
            read_all(&store, &key).await.as_deref(),
            Some(&b"%PDF-1.7 the rest"[..])
        );
        assert_eq!(
            files_under(&root),
            vec![root.join("prescriptions").join("one")]
        );

        store.delete(&key).await.expect("delete");
        store.delete(&key).await.expect("deleting twice is fine");
        assert!(store.get(&key).await.expect("get").is_none());
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn stale_partials_are_swept_young_ones_kept() {
        let root = temp_root();
        let partial = root.join(PARTIAL_DIR);
        std::fs::create_dir_all(&partial).expect("mkdir");
        std::fs::write(partial.join("a.part"), b"x").expect("write");
        let store = LocalFolder { root: root.clone() };
        assert_eq!(store.sweep_partials(SystemTime::now()).expect("sweep"), 0);
        let later = SystemTime::now() + PARTIAL_MAX_AGE + Duration::from_secs(1);
        assert_eq!(store.sweep_partials(later).expect("sweep"), 1);
        assert!(files_under(&root).is_empty());
        let _ = std::fs::remove_dir_all(&root);
    }
}
