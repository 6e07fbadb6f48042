//! Conditional GET: entity tags for the JSON API and the embedded assets, and the
//! `If-None-Match` check that turns an unchanged answer into `304 Not Modified`.
//!
//! The consoles poll their lists every few seconds; with the tag they sent back, an
//! unchanged list costs the server one query and the network a header, not a page of
//! JSON. The tag is a digest of the answer's bytes, so it needs no version column and is
//! the same on every node of a cluster.

use actix_web::body::{self, BodySize, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::HttpResponse;
use sha2::{Digest, Sha256};

/// The routes whose answers are tagged: the lists the consoles poll. Each documents its
/// `304` in the OpenAPI document (a test checks).
pub const POLLED_ROUTES: [&str; 5] = [
    "/api/v1/orders",
    "/api/v1/prescriptions",
    "/api/v1/riders",
    "/api/v1/pharmacies/{id}/stock",
    "/api/v1/admin/dispatch",
];

/// The largest answer tagged; a larger one (none today: pages hold at most 100 items), or
/// one streamed without a known size, is passed through untagged rather than buffered.
const MAX_TAGGED_BYTES: u64 = 4 << 20;

/// A strong tag for these bytes: the first 128 bits of their SHA-256, quoted.
pub fn tag_of(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// Whether an `If-None-Match` header value names `tag` (or is `*`). Weak tags compare by
/// their opaque part, as RFC 9110 asks for `If-None-Match`.
pub fn none_match_hits(if_none_match: &str, tag: &str) -> bool {
    let tag = tag.trim_start_matches("W/");
    if_none_match
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/") == tag)
}

fn is_json(res: &HttpResponse<impl MessageBody>) -> bool {
    res.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// Middleware: a `200` JSON answer to a `GET` of one of [`POLLED_ROUTES`] gets an `ETag`;
/// when the request named that tag in `If-None-Match`, the answer becomes an empty `304`.
pub async fn conditional_get(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    // The cheap tests first: matching the route pattern allocates (dozens of times on a
    // rider socket's handshake, measured), so only API GETs pay for it.
    let eligible = req.method() == Method::GET
        && req.path().starts_with("/api/v1/")
        && req
            .match_pattern()
            .is_some_and(|p| POLLED_ROUTES.contains(&p.as_str()));
    let asked = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let res = next.call(req).await?;
    let small = matches!(res.response().body().size(), BodySize::Sized(n) if n <= MAX_TAGGED_BYTES);
    if !eligible || !small || res.status() != StatusCode::OK || !is_json(res.response()) {
        return Ok(res.map_into_boxed_body());
    }
    let (req, res) = res.into_parts();
    let (head, payload) = res.into_parts();
    // Sized and small (checked above): reading it whole is bounded.
    let bytes = match body::to_bytes(payload).await {
        Ok(bytes) => bytes,
        Err(e) => {
            let e: Box<dyn std::error::Error> = e.into();
            return Err(actix_web::error::ErrorInternalServerError(e.to_string()));
        }
    };
    let tag = tag_of(&bytes);
    let mut res = if asked.as_deref().is_some_and(|a| none_match_hits(a, &tag)) {
        let mut not_modified = head.set_body(BoxBody::new(()));
        *not_modified.status_mut() = StatusCode::NOT_MODIFIED;
        not_modified.headers_mut().remove(header::CONTENT_TYPE);
        not_modified
    } else {
        head.set_body(BoxBody::new(bytes))
    };
    if let Ok(value) = HeaderValue::from_str(&tag) {
        res.headers_mut().insert(header::ETAG, value);
    }
    // Answers depend on the caller's token: no shared cache may keep them, and a browser
    // must ask again (with the tag) before reusing one.
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    res.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Authorization"));
    Ok(ServiceResponse::new(req, res))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_follow_the_bytes() {
        let a = tag_of(br#"{"items":[]}"#);
        assert_eq!(a, tag_of(br#"{"items":[]}"#));
        assert_ne!(a, tag_of(br#"{"items":[1]}"#));
        assert!(a.starts_with('"') && a.ends_with('"') && a.len() == 34);
    }

    #[test]
    fn if_none_match_lists_star_and_weak_tags() {
        let tag = "\"abc\"";
        assert!(none_match_hits("\"abc\"", tag));
        assert!(none_match_hits("\"x\", W/\"abc\"", tag));
        assert!(none_match_hits("*", tag));
        assert!(!none_match_hits("\"abcd\"", tag));
        assert!(!none_match_hits("", tag));
    }
}
