//! The [`AuthUser`] extractor: who is calling, from a verified access token.
//!
//! The token comes from `Authorization: Bearer …`. For WebSocket upgrades only, it may
//! come from the `access_token` query parameter instead (browsers and k6 cannot set
//! headers on a WebSocket); plain REST requests never take tokens from URLs, where they
//! would end up in proxy logs and browser history. A missing or invalid token is 401;
//! [`AuthUser::require`] turns a wrong role into 403.

use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use uuid::Uuid;

use crate::domain::Role;
use crate::error::ApiError;
use crate::state::AppState;

/// An authenticated caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthUser {
    pub id: Uuid,
    pub role: Role,
}

impl AuthUser {
    /// `Ok` when the caller has one of `roles`, else 403 `forbidden`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::Forbidden)
        }
    }
}

fn is_websocket_upgrade(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// The bearer token of the request, if any.
fn bearer_token(req: &HttpRequest) -> Option<String> {
    if let Some(value) = req.headers().get(header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned());
    }
    if is_websocket_upgrade(req) {
        return web::Query::<std::collections::HashMap<String, String>>::from_query(
            req.query_string(),
        )
        .ok()
        .and_then(|q| q.get("access_token").cloned());
    }
    None
}

impl FromRequest for AuthUser {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let Some(state) = req.app_data::<web::Data<AppState>>() else {
            return ready(Err(ApiError::Internal(anyhow::anyhow!("AppState missing"))));
        };
        let user = bearer_token(req)
            .and_then(|token| state.jwt.verify(&token))
            .map(|claims| AuthUser {
                id: claims.sub,
                role: claims.role,
            })
            .ok_or(ApiError::Unauthorized);
        ready(user)
    }
}
