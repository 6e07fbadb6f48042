//! The JSON body decoder on arbitrary bytes, for the request bodies with the most structure
//! (an order, a registration, a medicine): every input is decoded or refused as 400
//! `invalid_json` or 422 `validation_failed`, never a panic or an internal error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use medify::error::ApiError;
use medify::extract::decode_json;
use medify::routes::auth::RegisterRequest;
use medify::routes::medicines::NewMedicine;
use medify::routes::orders::NewOrderRequest;

fn check<T: serde::de::DeserializeOwned>(data: &[u8]) {
    match decode_json::<T>(data) {
        Ok(_) | Err(ApiError::InvalidJson(_)) | Err(ApiError::Validation(_)) => {}
        Err(other) => panic!("unexpected decode failure: {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    check::<NewOrderRequest>(data);
    check::<RegisterRequest>(data);
    check::<NewMedicine>(data);
    check::<serde_json::Value>(data);
});
