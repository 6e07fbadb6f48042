//! Frames the server sends to a rider's socket (the contract's "Server → rider" list).
//!
//! They are built by the rider session and the matcher and serialised by the socket, so
//! they live here, next to the actors that decide them.

use serde::Serialize;
use uuid::Uuid;

use crate::geo::Point;

/// A place on a map.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Place {
    pub lat: f64,
    pub lng: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Place {
    pub fn at(p: Point, name: Option<String>) -> Self {
        Self {
            lat: p.lat(),
            lng: p.lng(),
            name,
        }
    }
}

/// An offer as the rider sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OfferInfo {
    pub offer_id: Uuid,
    pub order_id: Uuid,
    pub pickup: Place,
    pub dropoff: Place,
    /// Straight-line metres from the rider to the pickup when offered.
    pub distance_m: i64,
    /// RFC 3339.
    pub expires_at: String,
}

/// One server → rider frame.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Outbound {
    Welcome {
        rider_id: Uuid,
        available: bool,
        /// The order as the rider sees it (never with the delivery code).
        active_order: Option<serde_json::Value>,
        pending_offer: Option<OfferInfo>,
    },
    Offer(OfferInfo),
    OfferExpired {
        offer_id: Uuid,
    },
    Assigned {
        order_id: Uuid,
        pickup: Place,
        dropoff: Place,
    },
    OrderCancelled {
        order_id: Uuid,
    },
    Error {
        code: &'static str,
        message: String,
        /// For `invalid_location` in a batch: the index of the bad point.
        #[serde(skip_serializing_if = "Option::is_none")]
        index: Option<usize>,
    },
    /// Not a frame: tells the socket that a newer connection of the same rider took
    /// over; the socket closes (1008, "replaced by a newer connection").
    #[serde(skip)]
    Replaced,
}

impl Outbound {
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Self::Error {
            code,
            message: message.into(),
            index: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_tagged_as_the_contract_says() {
        let id = Uuid::nil();
        let offer = Outbound::Offer(OfferInfo {
            offer_id: id,
            order_id: id,
            pickup: Place {
                lat: 1.0,
                lng: 2.0,
                name: Some("P".into()),
            },
            dropoff: Place {
                lat: 3.0,
                lng: 4.0,
                name: None,
            },
            distance_m: 120,
            expires_at: "2026-01-01T00:00:00Z".into(),
        });
        let v = serde_json::to_value(&offer).expect("json");
        assert_eq!(v["type"], "offer");
        assert_eq!(v["pickup"]["name"], "P");
        assert!(v["dropoff"].get("name").is_none());
        let v = serde_json::to_value(Outbound::OfferExpired { offer_id: id }).expect("json");
        assert_eq!(v["type"], "offer_expired");
        let v = serde_json::to_value(Outbound::error("rate_limited", "slow down")).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"type": "error", "code": "rate_limited", "message": "slow down"})
        );
    }
}
