//! The rider socket's frames (`/ws/rider`): what a rider sends ([`Inbound`], decoded by
//! [`decode`]) and what the server sends back ([`Outbound`], built by the rider session and
//! the matcher, written by the socket).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::geo::Point;
use crate::model::Fix;

/// One point of a `location` or `locations` frame, as sent.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PointIn {
    pub lat: f64,
    pub lng: f64,
    /// Unix milliseconds.
    pub ts: i64,
    /// m/s.
    pub speed: Option<f64>,
    /// Degrees.
    pub heading: Option<f64>,
    /// Metres.
    pub accuracy: Option<f64>,
}

impl PointIn {
    /// The point as a [`Fix`], or why its numbers are out of range.
    pub fn fix(&self) -> Result<Fix, String> {
        let at = Point::new(self.lat, self.lng).map_err(|e| e.to_string())?;
        let finite_or_none = |v: Option<f64>, name: &str| match v {
            Some(x) if !x.is_finite() || x < 0.0 => {
                Err(format!("{name} must be a finite number >= 0"))
            }
            _ => Ok(v),
        };
        Ok(Fix {
            at,
            ts_ms: self.ts,
            accuracy_m: finite_or_none(self.accuracy, "accuracy")?,
            speed_mps: finite_or_none(self.speed, "speed")?,
            heading: finite_or_none(self.heading, "heading")?,
        })
    }
}

/// One rider → server frame.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Inbound {
    Location(PointIn),
    Locations {
        points: Vec<PointIn>,
    },
    Availability {
        available: bool,
    },
    OfferResponse {
        offer_id: Uuid,
        accept: bool,
    },
    OrderStatus {
        order_id: Uuid,
        /// `picked_up` or `delivered`; the session refuses anything else.
        status: String,
        /// The customer's delivery code, with `delivered`.
        code: Option<String>,
    },
}

/// One text frame as the socket reads it: the message, or the `invalid_message` reason
/// (serde's words without its line and column). The fuzz target `rider_frame` drives this.
pub fn decode(text: &str) -> Result<Inbound, String> {
    serde_json::from_str(text).map_err(|e| {
        let reason = e.to_string();
        reason
            .split(" at line ")
            .next()
            .unwrap_or(&reason)
            .to_owned()
    })
}

/// A place on a map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Not a frame: the node is shutting down; the socket closes (1012, "service restart")
    /// so the app reconnects at once, through the balancer, to another node.
    #[serde(skip)]
    Restarting,
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

    #[test]
    fn inbound_frames_decode_by_type() {
        let id = Uuid::nil();
        assert_eq!(
            decode(r#"{"type":"location","lat":1.5,"lng":2.5,"ts":7,"heading":90}"#),
            Ok(Inbound::Location(PointIn {
                lat: 1.5,
                lng: 2.5,
                ts: 7,
                speed: None,
                heading: Some(90.0),
                accuracy: None,
            }))
        );
        assert_eq!(
            decode(&format!(
                r#"{{"type":"order_status","order_id":"{id}","status":"delivered","code":"1234"}}"#
            )),
            Ok(Inbound::OrderStatus {
                order_id: id,
                status: "delivered".into(),
                code: Some("1234".into()),
            })
        );
        let reason = decode(r#"{"type":"teleport"}"#).expect_err("unknown type");
        assert!(reason.starts_with("unknown variant `teleport`"), "{reason}");
        assert!(!reason.contains("line"), "{reason}");
    }
}
