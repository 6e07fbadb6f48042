//! The object store port: where uploaded files (prescriptions) live, never in the database.
//!
//! [`Objects`] is the port the application writes through; [`local::LocalFolder`] (the
//! default, a folder on disk) and [`s3::S3Bucket`] (any S3-compatible bucket) implement
//! it. `OBJECT_STORE` picks one ([`crate::config::ObjectStoreSettings`]); start-up opens it.
//!
//! The promise every implementation keeps: [`Objects::put`] reads the bytes from a stream
//! of chunks, and an object appears under its key only once every chunk has been written;
//! if the stream fails (the client went away, the upload was too big) or the backend
//! fails, nothing is left under the key. Memory stays bounded per upload: chunks are
//! passed on as they come (the S3 store holds at most one part, 5 MiB, per upload).

pub mod local;
pub mod s3;

use std::fmt;
use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;

/// The chunks of an object being written. An `Err` item means the source gave up: the
/// write must be abandoned and nothing kept.
pub type ChunkSource<'a> = Pin<&'a mut (dyn Stream<Item = Result<Bytes, SourceAborted>> + 'a)>;

/// The bytes of a stored object, as they are read.
pub type ObjectBody = Pin<Box<dyn Stream<Item = Result<Bytes, ObjectError>> + Send>>;

/// The source of a [`Objects::put`] stopped before its end; why is the source's business.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceAborted;

/// Why an object operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// The chunk source yielded an error; the partial object was discarded.
    #[error("the upload's source stopped before its end")]
    SourceAborted,
    #[error("local object store: {0}")]
    Io(#[from] std::io::Error),
    #[error("S3 object store: {0}")]
    Remote(#[from] object_store::Error),
}

/// The name of an object: `/`-separated segments of ASCII letters, digits, `.`, `_` and
/// `-`, none empty or starting with a dot, so a key can never climb out of a folder nor
/// name a store's own hidden files (the local folder's `.partial/`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// The longest key accepted.
    pub const MAX_LEN: usize = 512;

    /// Checks a key read from storage or built by the application.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() || raw.len() > Self::MAX_LEN {
            return Err(format!("an object key has 1 to {} bytes", Self::MAX_LEN));
        }
        for segment in raw.split('/') {
            let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
            if segment.is_empty() || segment.starts_with('.') {
                return Err(format!(
                    "object key {raw:?} has an empty segment or one starting with a dot"
                ));
            }
            if !segment.chars().all(allowed) {
                return Err(format!(
                    "object key {raw:?} has a character outside [A-Za-z0-9._-/]"
                ));
            }
        }
        Ok(Self(raw.to_owned()))
    }

    /// Where a prescription's file lives.
    pub fn prescription(id: uuid::Uuid) -> Self {
        Self(format!("prescriptions/{id}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key's segments, in order.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The object store port.
///
/// The futures are not `Send`: uploads are driven from the request's own worker thread,
/// straight from its multipart stream.
#[async_trait::async_trait(?Send)]
pub trait Objects: Send + Sync + fmt::Debug {
    /// Writes the object under `key` from `source`; returns the bytes written. The object
    /// exists under `key` only if this returns `Ok`. An existing object is replaced.
    async fn put(
        &self,
        key: &ObjectKey,
        content_type: &str,
        source: ChunkSource<'_>,
    ) -> Result<u64, ObjectError>;

    /// The object's bytes, or `None` if there is no such object.
    async fn get(&self, key: &ObjectKey) -> Result<Option<ObjectBody>, ObjectError>;

    /// Removes the object; removing one that does not exist is not an error.
    async fn delete(&self, key: &ObjectKey) -> Result<(), ObjectError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_leave_their_folder() {
        for bad in [
            "",
            "/abs",
            "a//b",
            "..",
            "a/../b",
            "a/./b",
            "trailing/",
            "spa ce",
            "back\\slash",
            "nul\0",
            "ünï",
            ".partial/x",
            "a/.hidden",
        ] {
            assert!(ObjectKey::parse(bad).is_err(), "{bad:?}");
        }
        for good in [
            "a",
            "prescriptions/0195a0c4-3b7e-7d21-8f3a-6c2b9e104d55",
            "x.y_z-1/2",
            "a./b.c",
        ] {
            assert_eq!(ObjectKey::parse(good).map(|k| k.0), Ok(good.to_owned()));
        }
        let id = uuid::Uuid::now_v7();
        let key = ObjectKey::prescription(id);
        assert_eq!(ObjectKey::parse(key.as_str()), Ok(key));
    }
}
