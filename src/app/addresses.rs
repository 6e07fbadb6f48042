//! Saved addresses, the application's side of `/api/v1/me/addresses`: what a request may
//! say (a label, the coordinates and the address text, every problem reported at once by
//! field), the cap per user (`MAX_ADDRESSES_PER_USER`, past it `409 limit_reached`) and
//! the default's rules, which the store keeps atomically (`crate::store::addresses`):
//!
//! - the first address is the default, whatever its `is_default` says;
//! - `is_default: true` (on create or patch) makes it the default and clears the old one;
//! - `is_default: false` on the default is `409 conflict`: a customer with addresses always
//!   has a default, so another one must be made the default instead; on any other address
//!   it changes nothing;
//! - deleting the default makes the newest remaining address the default (the one the
//!   list shows next).
//!
//! The handlers check the role, parse and map; orders read an address through
//! `Store::address_of` (owner-checked) and copy it.

use medify_actors::geo::{Point, PointError};
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{ApiError, FieldErrors};
use crate::state::AppState;
use crate::store::addresses::{Address, AddressChange, AddressFields, AddressWrite};

/// Longest label, in characters.
pub const MAX_LABEL_CHARS: usize = 50;
/// Longest address text, in characters (as for an order's delivery address).
pub const MAX_ADDRESS_CHARS: usize = 500;

/// A new saved address (`POST /api/v1/me/addresses`).
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewAddressRequest {
    /// 1 to 50 characters without control characters, not blank ("Home", "Office").
    #[schema(required = true, min_length = 1, max_length = 50)]
    pub label: Option<String>,
    #[schema(required = true, minimum = -90, maximum = 90)]
    pub lat: Option<f64>,
    #[schema(required = true, minimum = -180, maximum = 180)]
    pub lng: Option<f64>,
    /// 1 to 500 characters, not blank.
    #[schema(required = true, min_length = 1, max_length = 500)]
    pub address: Option<String>,
    /// `true` makes it the default (the old default stops being one). A customer's first
    /// address is the default whatever this says.
    pub is_default: Option<bool>,
}

/// A change to a saved address (`PATCH /api/v1/me/addresses/{id}`): any subset of the
/// fields; an absent (or `null`) field is left as it is.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct AddressPatch {
    /// 1 to 50 characters without control characters, not blank.
    #[schema(min_length = 1, max_length = 50)]
    pub label: Option<String>,
    #[schema(minimum = -90, maximum = 90)]
    pub lat: Option<f64>,
    #[schema(minimum = -180, maximum = 180)]
    pub lng: Option<f64>,
    /// 1 to 500 characters, not blank.
    #[schema(min_length = 1, max_length = 500)]
    pub address: Option<String>,
    /// `true` makes it the default (the old default stops being one). `false` on the
    /// default is `409 conflict`: make another address the default instead.
    pub is_default: Option<bool>,
}

/// Trimmed text of 1 to `max` characters. The length is checked before trimming as well,
/// so nothing longer than the documented bound is ever accepted.
fn text(raw: &str, max: usize, allow_controls: bool) -> Result<String, String> {
    let trimmed = raw.trim();
    if trimmed.is_empty() || raw.chars().count() > max {
        return Err(format!("must be 1 to {max} characters, not blank"));
    }
    if !allow_controls && trimmed.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(trimmed.to_owned())
}

fn label(raw: &str) -> Result<String, String> {
    text(raw, MAX_LABEL_CHARS, false)
}

fn address_text(raw: &str) -> Result<String, String> {
    text(raw, MAX_ADDRESS_CHARS, true)
}

/// A latitude on its own: finite, in [-90, 90] (the rule of [`Point`]).
fn latitude(lat: f64) -> Result<f64, String> {
    match Point::new(lat, 0.0) {
        Err(e @ PointError::Latitude) => Err(e.to_string()),
        _ => Ok(lat),
    }
}

/// A longitude on its own: finite, in [-180, 180] (the rule of [`Point`]).
fn longitude(lng: f64) -> Result<f64, String> {
    match Point::new(0.0, lng) {
        Err(e @ PointError::Longitude) => Err(e.to_string()),
        _ => Ok(lng),
    }
}

/// A new address checked: its fields, and whether it asks to be the default.
pub fn check_new(body: &NewAddressRequest) -> Result<(AddressFields, bool), ApiError> {
    let mut errors = FieldErrors::default();
    let label = errors
        .required("label", body.label.as_deref())
        .and_then(|l| errors.check("label", label(l)));
    let lat = errors
        .required("lat", body.lat.as_ref())
        .and_then(|l| errors.check("lat", latitude(*l)));
    let lng = errors
        .required("lng", body.lng.as_ref())
        .and_then(|l| errors.check("lng", longitude(*l)));
    let address = errors
        .required("address", body.address.as_deref())
        .and_then(|a| errors.check("address", address_text(a)));
    errors.finish()?;
    let (Some(label), Some(lat), Some(lng), Some(address)) = (label, lat, lng, address) else {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "validated address fields missing"
        )));
    };
    let point = Point::new(lat, lng)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("validated point refused: {e}")))?;
    let fields = AddressFields {
        label,
        point,
        address,
    };
    Ok((fields, body.is_default == Some(true)))
}

/// A patch checked field by field.
pub fn check_patch(body: &AddressPatch) -> Result<AddressChange, ApiError> {
    let mut errors = FieldErrors::default();
    let change = AddressChange {
        label: body
            .label
            .as_deref()
            .and_then(|l| errors.check("label", label(l))),
        lat: body.lat.and_then(|l| errors.check("lat", latitude(l))),
        lng: body.lng.and_then(|l| errors.check("lng", longitude(l))),
        address: body
            .address
            .as_deref()
            .and_then(|a| errors.check("address", address_text(a))),
        is_default: body.is_default,
    };
    errors.finish()?;
    Ok(change)
}

/// The store's verdict as the API answers it.
fn answer(state: &AppState, write: AddressWrite) -> Result<Option<Address>, ApiError> {
    match write {
        AddressWrite::Saved(address) => Ok(Some(address)),
        AddressWrite::Deleted => Ok(None),
        AddressWrite::NotFound => Err(ApiError::NotFound),
        AddressWrite::NoAccount => Err(ApiError::Unauthorized),
        AddressWrite::LimitReached => {
            let cap = state.settings.limits.addresses_per_user;
            Err(ApiError::Conflict {
                code: "limit_reached",
                detail: format!("you have {cap} saved addresses; delete one first"),
            })
        }
        AddressWrite::KeepsDefault => Err(ApiError::conflict(
            "this is your default address; make another address the default instead",
        )),
    }
}

fn saved(address: Option<Address>) -> Result<Address, ApiError> {
    address.ok_or_else(|| ApiError::Internal(anyhow::anyhow!("a saved address went missing")))
}

/// Saves a new address for `user`.
pub async fn create(
    state: &AppState,
    user: Uuid,
    body: &NewAddressRequest,
) -> Result<Address, ApiError> {
    let (fields, make_default) = check_new(body)?;
    let cap = state.settings.limits.addresses_per_user;
    let write = state
        .store
        .insert_address(user, &fields, make_default, cap)
        .await?;
    saved(answer(state, write)?)
}

/// Changes `user`'s address `id`.
pub async fn update(
    state: &AppState,
    user: Uuid,
    id: Uuid,
    body: &AddressPatch,
) -> Result<Address, ApiError> {
    let change = check_patch(body)?;
    let write = state.store.update_address(user, id, &change).await?;
    saved(answer(state, write)?)
}

/// Deletes `user`'s address `id`.
pub async fn delete(state: &AppState, user: Uuid, id: Uuid) -> Result<(), ApiError> {
    let write = state.store.delete_address(user, id).await?;
    answer(state, write).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(label: &str, lat: f64, lng: f64, address: &str) -> NewAddressRequest {
        NewAddressRequest {
            label: Some(label.to_owned()),
            lat: Some(lat),
            lng: Some(lng),
            address: Some(address.to_owned()),
            is_default: None,
        }
    }

    /// The fields a refused request names.
    fn refused<T: std::fmt::Debug>(result: Result<T, ApiError>) -> Vec<String> {
        match result {
            Err(ApiError::Validation(errors)) => errors.into_iter().map(|e| e.field).collect(),
            other => panic!("not a validation error: {other:?}"),
        }
    }

    #[test]
    fn a_valid_address_is_trimmed() {
        let (fields, make_default) =
            check_new(&new("  Home ", 12.97, 77.59, " 1 MG Road  ")).expect("valid");
        assert_eq!(fields.label, "Home");
        assert_eq!(fields.address, "1 MG Road");
        assert_eq!((fields.point.lat(), fields.point.lng()), (12.97, 77.59));
        assert!(!make_default);
    }

    #[test]
    fn every_problem_is_named_at_once() {
        assert_eq!(
            refused(check_new(&new("  ", f64::NAN, 181.0, ""))),
            ["label", "lat", "lng", "address"]
        );
        assert_eq!(
            refused(check_new(&NewAddressRequest {
                label: None,
                lat: None,
                lng: None,
                address: None,
                is_default: Some(true),
            })),
            ["label", "lat", "lng", "address"]
        );
        assert_eq!(
            refused(check_new(&new("a\u{7}b", 90.5, -180.0, "x"))),
            ["label", "lat"]
        );
        assert_eq!(
            refused(check_new(&new(
                "Home",
                f64::INFINITY,
                f64::NEG_INFINITY,
                "x"
            ))),
            ["lat", "lng"]
        );
    }

    #[test]
    fn lengths_are_bounded_before_trimming() {
        let long_label = "a".repeat(MAX_LABEL_CHARS + 1);
        assert_eq!(
            refused(check_new(&new(&long_label, 0.0, 0.0, "x"))),
            ["label"]
        );
        // Padding counts: the documented bound is on what the client sends.
        let padded = format!("{}a", " ".repeat(MAX_LABEL_CHARS));
        assert_eq!(refused(check_new(&new(&padded, 0.0, 0.0, "x"))), ["label"]);
        let longest = "é".repeat(MAX_ADDRESS_CHARS);
        assert!(check_new(&new("Home", 0.0, 0.0, &longest)).is_ok());
        let too_long = "é".repeat(MAX_ADDRESS_CHARS + 1);
        assert_eq!(
            refused(check_new(&new("Home", 0.0, 0.0, &too_long))),
            ["address"]
        );
        // Bounds are inclusive.
        assert!(check_new(&new("Pole", -90.0, 180.0, "x")).is_ok());
    }

    #[test]
    fn patches_check_only_what_they_carry() {
        let change = check_patch(&AddressPatch::default()).expect("empty is valid");
        assert!(change.label.is_none() && change.lat.is_none() && change.is_default.is_none());
        let change = check_patch(&AddressPatch {
            lat: Some(-12.5),
            is_default: Some(true),
            ..AddressPatch::default()
        })
        .expect("valid");
        assert_eq!((change.lat, change.lng), (Some(-12.5), None));
        assert_eq!(change.is_default, Some(true));
        let bad = AddressPatch {
            label: Some(" ".into()),
            lat: Some(f64::NAN),
            lng: Some(-180.5),
            address: Some(String::new()),
            is_default: Some(false),
        };
        assert_eq!(
            refused(check_patch(&bad)),
            ["label", "lat", "lng", "address"]
        );
    }
}
