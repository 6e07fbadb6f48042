//! Objects in an S3-compatible bucket (`OBJECT_STORE=s3://bucket`), through the
//! `object_store` crate: AWS S3 itself, or MinIO, Garage, Ceph and the like at
//! `S3_ENDPOINT` (plain `http://` is allowed only when the endpoint says so).
//!
//! An object up to one part (5 MiB, S3's smallest multipart part) is a single PUT, which
//! S3 applies whole or not at all. A larger one is a multipart upload, completed only
//! after its last part; any failure aborts it, so S3 drops the parts already sent. An
//! upload holds at most two parts in memory: the one being filled and the one being sent.
//!
//! Request signing uses `ring`, and TLS is rustls on ring's provider (installed here), so
//! the build needs no second crypto library. Credentials never reach a log: this type's
//! `Debug` shows the bucket only.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions,
    PutPayloadMut, RetryConfig, WriteMultipart,
};

use super::{ChunkSource, ObjectBody, ObjectError, ObjectKey, Objects};
use crate::config::S3Settings;

/// S3's smallest multipart part (except the last): objects up to this size are one PUT.
const PART_SIZE: usize = 5 * 1024 * 1024;

/// Objects in one bucket.
pub struct S3Bucket {
    bucket: String,
    store: Arc<dyn ObjectStore>,
}

impl fmt::Debug for S3Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Bucket")
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

impl S3Bucket {
    /// A client for the bucket `settings` names; nothing is sent until the first request.
    pub fn new(settings: &S3Settings) -> anyhow::Result<Self> {
        // reqwest's rustls has no provider compiled in; ring's is. Installing it twice (a
        // second store in the same process) is refused harmlessly.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&settings.bucket)
            .with_region(&settings.region)
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(30),
                ..RetryConfig::default()
            });
        if let Some(endpoint) = &settings.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        if let Some(keys) = &settings.keys {
            let secret = String::from_utf8(keys.secret_access_key.expose().to_vec())
                .map_err(|_| anyhow::anyhow!("S3_SECRET_ACCESS_KEY is not UTF-8"))?;
            builder = builder
                .with_access_key_id(&keys.access_key_id)
                .with_secret_access_key(secret);
        }
        // The builder's own error may quote its configuration: say only which bucket.
        let store = builder
            .build()
            .map_err(|_| anyhow::anyhow!("invalid S3 settings for bucket {}", settings.bucket))?;
        Ok(Self {
            bucket: settings.bucket.clone(),
            store: Arc::new(store),
        })
    }

    fn path_of(key: &ObjectKey) -> Path {
        // Keys are already plain ASCII segments; nothing is escaped.
        Path::from_iter(key.segments())
    }

    /// Sends what `source` still holds after `first` (a full part) as a multipart upload.
    async fn put_multipart(
        &self,
        path: &Path,
        attributes: Attributes,
        first: PutPayloadMut,
        mut source: ChunkSource<'_>,
    ) -> Result<u64, ObjectError> {
        let opts = PutMultipartOptions {
            attributes,
            ..PutMultipartOptions::default()
        };
        let upload = self.store.put_multipart_opts(path, opts).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut written = first.content_length() as u64;
        for chunk in first.freeze() {
            writer.put(chunk);
        }
        loop {
            let chunk = match source.next().await {
                None => break,
                Some(Ok(chunk)) => chunk,
                Some(Err(_)) => {
                    abort(writer).await;
                    return Err(ObjectError::SourceAborted);
                }
            };
            // One part in flight at most: memory stays at two parts per upload.
            if let Err(e) = writer.wait_for_capacity(1).await {
                abort(writer).await;
                return Err(e.into());
            }
            written += chunk.len() as u64;
            writer.put(chunk);
        }
        // `finish` aborts the upload itself when completing fails.
        writer.finish().await?;
        Ok(written)
    }
}

/// Abandons a multipart upload (S3 drops its parts); a failure to do so is only logged,
/// the bucket's lifecycle rules being the last resort.
async fn abort(writer: WriteMultipart) {
    if let Err(e) = writer.abort().await {
        tracing::warn!(error = %e, "could not abort a multipart upload");
    }
}

#[async_trait::async_trait(?Send)]
impl Objects for S3Bucket {
    async fn put(
        &self,
        key: &ObjectKey,
        content_type: &str,
        mut source: ChunkSource<'_>,
    ) -> Result<u64, ObjectError> {
        let path = Self::path_of(key);
        let attributes = Attributes::from_iter([(Attribute::ContentType, content_type.to_owned())]);
        let mut first = PutPayloadMut::new();
        while first.content_length() < PART_SIZE {
            match source.next().await {
                Some(Ok(chunk)) => first.push(chunk),
                Some(Err(_)) => return Err(ObjectError::SourceAborted),
                None => {
                    let written = first.content_length() as u64;
                    let opts = PutOptions {
                        attributes,
                        ..PutOptions::default()
                    };
                    self.store.put_opts(&path, first.freeze(), opts).await?;
                    return Ok(written);
                }
            }
        }
        self.put_multipart(&path, attributes, first, source).await
    }

    async fn get(&self, key: &ObjectKey) -> Result<Option<ObjectBody>, ObjectError> {
        match self.store.get(&Self::path_of(key)).await {
            Ok(found) => Ok(Some(Box::pin(
                found.into_stream().map_err(ObjectError::Remote),
            ))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), ObjectError> {
        match self.store.delete(&Self::path_of(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
