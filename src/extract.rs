//! Request extractors whose failures speak the problem+json dialect.
//!
//! [`ApiJson`] replaces `web::Json`: syntax errors are 400 `invalid_json`, wrong types and
//! missing fields are 422 `validation_failed` with the offending field's path
//! (`items[0].qty`), found by `serde_path_to_error`. Every request body of this API is a
//! JSON object; any other JSON value (an array, which serde would read field by field into
//! a struct, a string, a number) is 422 on `body`. [`path_config`] and [`query_config`]
//! route actix's path and query extractor errors through [`ApiError`] as well: a path
//! segment that does not parse (an id that is not a UUID) names nothing that exists, so it
//! is 404.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::error::{PayloadError, QueryPayloadError};
use actix_web::http::header;
use actix_web::web::{self, Bytes};
use actix_web::{FromRequest, HttpRequest};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, FieldError};

/// Largest JSON body accepted, in bytes.
pub const JSON_LIMIT: usize = 64 * 1024;

/// A JSON request body decoded into `T`, or a problem+json error.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T> ApiJson<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for ApiJson<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let content_type_ok = match req.headers().get(header::CONTENT_TYPE) {
            // Lenient: a client that sends no Content-Type still gets its body decoded.
            None => true,
            Some(ct) => ct.to_str().is_ok_and(|ct| {
                let essence = ct.split(';').next().unwrap_or("").trim();
                essence.eq_ignore_ascii_case("application/json") || essence.ends_with("+json")
            }),
        };
        let body = Bytes::from_request(req, payload);
        Box::pin(async move {
            if !content_type_ok {
                return Err(ApiError::UnsupportedMediaType);
            }
            let bytes = body.await.map_err(|e| match e.as_error::<PayloadError>() {
                Some(PayloadError::Overflow) => ApiError::PayloadTooLarge,
                _ => ApiError::BadRequest("the request body could not be read".into()),
            })?;
            decode_json(&bytes).map(ApiJson)
        })
    }
}

/// Decodes a JSON document, classifying failures as the contract wants.
///
/// The happy path is plain serde_json; only a failed decode runs again under
/// serde_path_to_error to find the field's path (tracking paths on every decode costs
/// 2.5× — see `benches/extract.rs`).
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let decoded = serde_json::from_slice(bytes).map_err(|e| explain::<T>(bytes, &e))?;
    // serde's derived structs also read a JSON array, by position (`[null, null]` is a
    // `ProfilePatch`): the document says object, so nothing else is accepted.
    if !is_object(bytes) {
        return Err(not_an_object());
    }
    Ok(decoded)
}

/// Whether the (well-formed) document's top-level value is an object.
fn is_object(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{')
}

fn not_an_object() -> ApiError {
    ApiError::Validation(vec![FieldError::new("body", "must be a JSON object")])
}

/// Turns a decode failure into the contract's error: 400 for malformed JSON (which wins
/// over a type error met earlier in the document), else 422 naming the field.
fn explain<T: DeserializeOwned>(bytes: &[u8], error: &serde_json::Error) -> ApiError {
    if error.classify() != serde_json::error::Category::Data {
        return ApiError::InvalidJson(strip_position(&error.to_string()));
    }
    if let Some(syntax) = syntax_error(bytes) {
        return ApiError::InvalidJson(syntax);
    }
    if !is_object(bytes) {
        return not_an_object();
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Err(e) => {
            let path = e.path().to_string();
            let message = strip_position(&e.into_inner().to_string());
            ApiError::Validation(vec![field_error(&path, message)])
        }
        // Cannot happen (the same input failed above); report what serde said.
        Ok(_) => ApiError::Validation(vec![FieldError::new(
            "body",
            strip_position(&error.to_string()),
        )]),
    }
}

/// The syntax error in `bytes`, if it is not a well-formed JSON document.
fn syntax_error(bytes: &[u8]) -> Option<String> {
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes)
        .err()
        .map(|e| strip_position(&e.to_string()))
}

/// serde_json appends " at line L column C"; the path is more useful than the position.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// Builds a field error; "missing field `x`" is reported on `x` itself.
fn field_error(path: &str, message: String) -> FieldError {
    let parent = if path == "." { "" } else { path };
    if let Some(name) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        let field = if parent.is_empty() {
            name.to_owned()
        } else {
            format!("{parent}.{name}")
        };
        return FieldError::new(field, "is required");
    }
    let field = if parent.is_empty() { "body" } else { parent };
    FieldError::new(field, message)
}

/// Path extractor errors: a segment that does not parse names no resource, so 404.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|_err, _req| ApiError::NotFound.into())
}

/// Query extractor errors: 422 with the message serde gave.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err, _req| {
        let message = match &err {
            QueryPayloadError::Deserialize(e) => e.to_string(),
            other => other.to_string(),
        };
        ApiError::Validation(vec![FieldError::new("query", message)]).into()
    })
}

/// Raw body limit for extractors that read bytes (including [`ApiJson`]).
pub fn payload_config() -> web::PayloadConfig {
    web::PayloadConfig::new(JSON_LIMIT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Item {
        medicine_id: String,
        qty: u32,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Order {
        items: Vec<Item>,
    }

    fn fields(err: ApiError) -> Vec<FieldError> {
        match err {
            ApiError::Validation(f) => f,
            other => panic!("expected validation, got {other:?}"),
        }
    }

    #[test]
    fn syntax_errors_are_invalid_json() {
        for body in [&b"{"[..], b"", b"{\"items\":[}", b"{} trailing"] {
            let err = decode_json::<Order>(body).expect_err("malformed");
            assert_eq!(err.code(), "invalid_json", "{body:?}");
        }
    }

    #[test]
    fn wrong_types_name_the_field() {
        let err = decode_json::<Order>(br#"{"items":[{"medicine_id":"a","qty":"two"}]}"#)
            .expect_err("wrong type");
        let f = fields(err);
        assert_eq!(f[0].field, "items[0].qty");
        assert!(f[0].message.contains("invalid type"), "{}", f[0].message);
    }

    #[test]
    fn missing_fields_name_the_field() {
        let f = fields(decode_json::<Order>(br#"{"items":[{"qty":2}]}"#).expect_err("missing"));
        assert_eq!(f[0].field, "items[0].medicine_id");
        let f = fields(decode_json::<Order>(br#"{}"#).expect_err("missing"));
        assert_eq!(f[0].field, "items");
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Patch {
        name: Option<String>,
        phone: Option<String>,
    }

    #[test]
    fn only_objects_are_bodies() {
        // serde alone would read `[null, null]` as a Patch with both fields absent.
        for body in [
            &b"[null, null]"[..],
            b" [\"a\", \"b\"]",
            b"\"text\"",
            b"42",
            b"null",
            b"[1, 2, 3]",
        ] {
            let f = fields(decode_json::<Patch>(body).expect_err("not an object"));
            assert_eq!(f[0].field, "body", "{body:?}");
            assert_eq!(f[0].message, "must be a JSON object", "{body:?}");
        }
        let p: Patch = decode_json(b" {\"name\": \"Ann\"}").expect("an object decodes");
        assert_eq!(p.name.as_deref(), Some("Ann"));
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let o: Order = decode_json(br#"{"items":[],"extra":{"x":1}}"#).expect("decodes");
        assert!(o.items.is_empty());
    }
}
