//! Prescriptions on the customer's side: the small PDF a simulated customer uploads before
//! an order with prescription-only items, the `multipart/form-data` body that carries it,
//! and the upload itself (`POST /api/v1/prescriptions`, one part named `file`; the server
//! judges the type by the first bytes, so the file must really start with `%PDF-`).
//!
//! The upload endpoint arrives in a separate change. Until every server the sim is pointed
//! at has it, a 404 from it is not a protocol error: [`upload`] answers
//! [`Upload::NotOffered`] and the customer places the order without its prescription-only
//! line (counted, and named in the report's warnings). Removing that fallback is deleting
//! the `NotOffered` variant and following the compiler.

use uuid::Uuid;

use crate::api::{expect, uuid_field, Api};

/// What became of an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upload {
    /// Stored; the prescription's id, for the order's `prescription_id`.
    Stored(Uuid),
    /// The server has no upload endpoint (404): this build predates prescriptions.
    NotOffered,
}

/// Uploads a generated prescription for the order at `index` of the schedule.
pub async fn upload(api: &Api, token: &str, index: u64) -> anyhow::Result<Upload> {
    let file = pdf(&format!("Rx for simulated order {index}"));
    let boundary = format!("medify-sim-boundary-{index:016x}");
    let body = multipart(
        &boundary,
        "file",
        &format!("prescription-{index}.pdf"),
        "application/pdf",
        &file,
    );
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let reply = api.upload_prescription(token, &content_type, &body).await?;
    if reply.status == 404 {
        return Ok(Upload::NotOffered);
    }
    let v = expect("upload prescription", reply, &[201])?.json();
    Ok(Upload::Stored(uuid_field(&v, "id")?))
}

/// A one-page PDF that says `text` (letters, digits and spaces only), with a correct
/// cross-reference table: a few hundred bytes any PDF reader opens.
pub fn pdf(text: &str) -> Vec<u8> {
    let text: String = text
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == ' ')
        .collect();
    let content = format!("BT /F1 14 Tf 24 60 Td ({text}) Tj ET");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 400 120] /Contents 4 0 R \
         /Resources << /Font << /F1 5 0 R >> >> >>"
            .to_owned(),
        format!(
            "<< /Length {} >>\nstream\n{content}\nendstream",
            content.len()
        ),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_owned(),
    ];
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::with_capacity(objects.len());
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{body}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    // Each entry is exactly 20 bytes, its end of line included.
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for offset in offsets {
        out.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

/// A `multipart/form-data` body with one file part.
pub fn multipart(
    boundary: &str,
    name: &str,
    filename: &str,
    content_type: &str,
    bytes: &[u8],
) -> Vec<u8> {
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; \
         filename=\"{filename}\"\r\nContent-Type: {content_type}\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
        haystack.windows(needle.len()).position(|w| w == needle)
    }

    #[test]
    fn the_pdf_is_small_and_its_cross_references_point_at_its_objects() {
        let pdf = pdf("Rx for simulated order 7 (ignored: punctuation)");
        assert!(
            pdf.starts_with(b"%PDF-"),
            "the server sniffs the first bytes"
        );
        assert!(pdf.ends_with(b"%%EOF\n"));
        assert!((200..2048).contains(&pdf.len()), "{} bytes", pdf.len());
        let text = String::from_utf8(pdf.clone()).expect("ASCII");
        assert!(text.contains("(Rx for simulated order 7 ignored punctuation) Tj"));
        // startxref names the xref table, and each entry its object.
        let start: usize = text
            .lines()
            .skip_while(|l| *l != "startxref")
            .nth(1)
            .and_then(|l| l.parse().ok())
            .expect("startxref");
        assert!(text[start..].starts_with("xref\n0 6\n"));
        let entries: Vec<&str> = text[start..].lines().skip(3).take(5).collect();
        for (i, entry) in entries.iter().enumerate() {
            assert_eq!(entry.len() + 1, 20, "{entry:?}");
            let offset: usize = entry[..10].parse().expect("offset");
            assert!(
                text[offset..].starts_with(&format!("{} 0 obj\n", i + 1)),
                "object {} at {offset}",
                i + 1
            );
        }
        // The stream's declared length is its content's.
        let stream = find(&pdf, b"stream\n").expect("stream") + 7;
        let end = find(&pdf, b"\nendstream").expect("endstream");
        assert!(text.contains(&format!("/Length {}", end - stream)));
    }

    #[test]
    fn the_multipart_body_has_one_file_part() {
        let body = multipart("b0undary", "file", "p.pdf", "application/pdf", b"%PDF-x");
        assert_eq!(
            String::from_utf8(body).expect("text"),
            "--b0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"p.pdf\"\r\n\
             Content-Type: application/pdf\r\n\r\n%PDF-x\r\n--b0undary--\r\n"
        );
    }
}
