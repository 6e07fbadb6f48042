//! Prescriptions, the application's side of `/api/v1/prescriptions`: an upload is judged
//! by its first bytes ([`sniff`]: JPEG, PNG or PDF, whatever the client called it), then
//! streamed into the object store while it is hashed (SHA-256) and counted, and stopped as
//! soon as it passes `PRESCRIPTION_MAX_BYTES`; only a file stored whole gets its row. No
//! upload is ever held in memory whole: chunks go on to the store as they arrive. And who
//! may see one ([`visible`]): its customer, the staff of a pharmacy with an order carrying
//! it, admins; anyone else is told it does not exist.

use std::collections::VecDeque;
use std::fmt::Display;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::domain::Role;
use crate::error::ApiError;
use crate::objects::{ChunkSource, ObjectError, ObjectKey, SourceAborted};
use crate::state::AppState;
use crate::store::prescriptions::{
    NewPrescription, Prescription, PrescriptionScope, PrescriptionType, StoredPrescription,
};

/// Bytes [`sniff`] needs to see (PNG's signature is the longest).
pub const MAGIC_LEN: usize = 8;

/// What a file's first bytes say it is: JPEG (`FF D8 FF`), PNG (`89 50 4E 47 0D 0A 1A
/// 0A`) or PDF (`%PDF-`); anything else, executables renamed `.pdf` included, is `None`.
pub fn sniff(head: &[u8]) -> Option<PrescriptionType> {
    if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(PrescriptionType::Jpeg)
    } else if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(PrescriptionType::Png)
    } else if head.starts_with(b"%PDF-") {
        Some(PrescriptionType::Pdf)
    } else {
        None
    }
}

/// Why an upload was refused.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("the file is not a JPEG, PNG or PDF")]
    Unsupported,
    #[error("the file is larger than {0} bytes")]
    TooLarge(u64),
    /// The request body broke off or is malformed.
    #[error("the upload could not be read: {0}")]
    Unreadable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<UploadError> for ApiError {
    fn from(e: UploadError) -> Self {
        match e {
            UploadError::Unsupported => ApiError::UnsupportedMediaType,
            UploadError::TooLarge(_) => ApiError::PayloadTooLarge,
            UploadError::Unreadable(detail) => ApiError::BadRequest(detail),
            UploadError::Internal(e) => ApiError::Internal(e),
        }
    }
}

/// The file's chunks on their way to the store: each is counted and hashed; past the
/// limit, or when the request breaks off, the stream yields an error (the store then
/// discards what it wrote) and remembers why.
struct Inspected<S> {
    /// Chunks already read to sniff the type, given out first.
    head: VecDeque<Bytes>,
    rest: S,
    hasher: Sha256,
    size: u64,
    max_bytes: u64,
    failure: Option<UploadError>,
}

impl<S, E> Stream for Inspected<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Display,
{
    type Item = Result<Bytes, SourceAborted>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.failure.is_some() {
            return Poll::Ready(None);
        }
        let chunk = match this.head.pop_front() {
            Some(chunk) => chunk,
            None => match this.rest.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(Err(e))) => {
                    this.failure = Some(UploadError::Unreadable(e.to_string()));
                    return Poll::Ready(Some(Err(SourceAborted)));
                }
                Poll::Ready(Some(Ok(chunk))) => chunk,
            },
        };
        this.size += chunk.len() as u64;
        if this.size > this.max_bytes {
            this.failure = Some(UploadError::TooLarge(this.max_bytes));
            return Poll::Ready(Some(Err(SourceAborted)));
        }
        this.hasher.update(&chunk);
        Poll::Ready(Some(Ok(chunk)))
    }
}

/// Reads chunks until [`MAGIC_LEN`] bytes are in (or the file ends); returns them and
/// their first bytes.
async fn read_head<S, E>(
    file: &mut S,
    max_bytes: u64,
) -> Result<(VecDeque<Bytes>, Vec<u8>), UploadError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Display,
{
    let mut chunks = VecDeque::new();
    let mut magic = Vec::with_capacity(MAGIC_LEN);
    let mut size = 0u64;
    while magic.len() < MAGIC_LEN {
        let Some(chunk) = file.next().await else {
            break;
        };
        let chunk = chunk.map_err(|e| UploadError::Unreadable(e.to_string()))?;
        size += chunk.len() as u64;
        if size > max_bytes {
            return Err(UploadError::TooLarge(max_bytes));
        }
        let wanted = (MAGIC_LEN - magic.len()).min(chunk.len());
        magic.extend_from_slice(&chunk[..wanted]);
        chunks.push_back(chunk);
    }
    Ok((chunks, magic))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Stores `file` (the upload's chunks as they arrive) for `customer_id` and records it.
pub async fn upload<S, E>(
    state: &AppState,
    customer_id: Uuid,
    mut file: S,
) -> Result<Prescription, UploadError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Display,
{
    let max_bytes = state.settings.prescription_max_bytes;
    let (head, magic) = read_head(&mut file, max_bytes).await?;
    let content_type = sniff(&magic).ok_or(UploadError::Unsupported)?;

    let id = Uuid::now_v7();
    let key = ObjectKey::prescription(id);
    let mut inspected = Inspected {
        head,
        rest: file,
        hasher: Sha256::new(),
        size: 0,
        max_bytes,
        failure: None,
    };
    let pinned: Pin<&mut Inspected<S>> = Pin::new(&mut inspected);
    let source: ChunkSource<'_> = pinned;
    let stored = state.objects.put(&key, content_type.as_str(), source).await;
    match stored {
        Ok(_) => {}
        Err(ObjectError::SourceAborted) => {
            return Err(inspected
                .failure
                .take()
                .unwrap_or_else(|| UploadError::Unreadable("the upload broke off".to_owned())))
        }
        Err(e) => {
            return Err(anyhow::Error::new(e)
                .context("could not store a prescription")
                .into())
        }
    }

    let sha256 = hex(&inspected.hasher.finalize());
    let size_bytes = i64::try_from(inspected.size).unwrap_or(i64::MAX);
    let created_at = crate::store::now();
    let new = NewPrescription {
        id,
        customer_id,
        content_type,
        size_bytes,
        sha256: &sha256,
        object_key: key.as_str(),
        created_at,
    };
    if let Err(e) = state.store.insert_prescription(&new).await {
        // No row will ever point at the file: it goes too.
        if let Err(rm) = state.objects.delete(&key).await {
            tracing::warn!(error = %rm, key = %key, "could not delete an unrecorded prescription file");
        }
        return Err(anyhow::Error::new(e)
            .context("could not record a prescription")
            .into());
    }
    Ok(Prescription {
        id,
        content_type,
        size_bytes,
        sha256,
        created_at,
    })
}

/// The pharmacy a `pharmacy` user works for, if any.
async fn staff_pharmacy(state: &AppState, user: &AuthUser) -> Result<Option<Uuid>, ApiError> {
    Ok(state
        .store
        .user_by_id(user.id)
        .await?
        .and_then(|u| u.pharmacy_id))
}

/// Prescription `id` if `user` may see it, else 404 (whether or not it exists).
pub async fn visible(
    state: &AppState,
    user: &AuthUser,
    id: Uuid,
) -> Result<StoredPrescription, ApiError> {
    let found = state
        .store
        .prescription(id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let allowed = match user.role {
        Role::Admin => true,
        Role::Customer => found.customer_id == user.id,
        Role::Pharmacy => match staff_pharmacy(state, user).await? {
            Some(pharmacy) => {
                state
                    .store
                    .prescription_on_pharmacy_order(id, pharmacy)
                    .await?
            }
            None => false,
        },
        Role::Rider => false,
    };
    if allowed {
        Ok(found)
    } else {
        Err(ApiError::NotFound)
    }
}

/// Whose prescriptions `user` lists; `None`: nobody's (a rider, or staff of no pharmacy).
pub async fn scope(
    state: &AppState,
    user: &AuthUser,
) -> Result<Option<PrescriptionScope>, ApiError> {
    Ok(match user.role {
        Role::Admin => Some(PrescriptionScope::All),
        Role::Customer => Some(PrescriptionScope::Customer(user.id)),
        Role::Pharmacy => staff_pharmacy(state, user)
            .await?
            .map(PrescriptionScope::Pharmacy),
        Role::Rider => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;

    #[test]
    fn sniffing_reads_the_magic_bytes_only() {
        assert_eq!(
            sniff(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10]),
            Some(PrescriptionType::Jpeg)
        );
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF]), Some(PrescriptionType::Jpeg));
        assert_eq!(
            sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
            Some(PrescriptionType::Png)
        );
        assert_eq!(sniff(b"%PDF-1.7\n%\xE2\xE3"), Some(PrescriptionType::Pdf));
        for other in [
            &b""[..],
            b"\x7fELF\x02\x01\x01\0", // a Linux executable
            b"MZ\x90\0\x03\0\0\0",    // a Windows one
            b"#!/bin/sh\nrm -rf /",   // a script
            b"%PDF",                  // too short to be sure
            b"\x89PNG\r\n\x1a",       // a truncated signature
            b"\xFF\xD8",              // likewise
            b" %PDF-1.7",             // not at the start
            b"GIF89a\x01\0",          // an image, but not one we take
            b"<svg xmlns=",           // markup
            b"PK\x03\x04\x14\0\0\0",  // a zip (docx, apk)
        ] {
            assert_eq!(sniff(other), None, "{other:?}");
        }
    }

    #[test]
    fn hex_is_lower_case_and_two_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xab, 0xff]), "000fabff");
        assert_eq!(
            hex(&Sha256::digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, String>> + Unpin {
        stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    #[actix_web::test]
    async fn the_head_is_gathered_across_small_chunks() {
        let mut file = chunks(&[b"\x89P", b"NG\r", b"\n\x1a\n\0rest", b"more"]);
        let (head, magic) = read_head(&mut file, 100).await.expect("head");
        assert_eq!(magic, b"\x89PNG\r\n\x1a\n");
        assert_eq!(head.len(), 3);
        assert_eq!(sniff(&magic), Some(PrescriptionType::Png));
        let mut short = chunks(&[b"%PD"]);
        let (_, magic) = read_head(&mut short, 100).await.expect("a short file");
        assert_eq!(sniff(&magic), None);
        let mut big = chunks(&[b"%PDF-1.7 and far too much"]);
        assert!(matches!(
            read_head(&mut big, 10).await,
            Err(UploadError::TooLarge(10))
        ));
    }

    #[actix_web::test]
    async fn inspection_counts_hashes_and_stops_past_the_limit() {
        let inspect = |max_bytes| Inspected {
            head: VecDeque::from([Bytes::from_static(b"%PDF-")]),
            rest: chunks(&[b"1.7 ", b"body"]),
            hasher: Sha256::new(),
            size: 0,
            max_bytes,
            failure: None,
        };
        let mut whole = inspect(13);
        let mut out = Vec::new();
        while let Some(chunk) = whole.next().await {
            out.extend_from_slice(&chunk.expect("within the limit"));
        }
        assert_eq!(out, b"%PDF-1.7 body");
        assert_eq!(whole.size, 13);
        assert_eq!(
            hex(&whole.hasher.finalize()),
            hex(&Sha256::digest(b"%PDF-1.7 body"))
        );

        let mut over = inspect(12);
        let mut results = Vec::new();
        while let Some(chunk) = over.next().await {
            results.push(chunk.is_ok());
        }
        assert_eq!(
            results,
            vec![true, true, false],
            "the chunk past the limit fails, then the end"
        );
        assert!(matches!(over.failure, Some(UploadError::TooLarge(12))));
    }
}
