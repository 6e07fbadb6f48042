//! The tracking socket's frames (`/ws/orders/{id}/track`, server → watcher): the opening
//! [`Snapshot`], then the [`TrackFrame`]s that the order's watchers slot hands the socket.

use serde::Serialize;

use crate::model::OrderStatus;

/// A rider's last position as a watcher first sees it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Position {
    pub lat: f64,
    pub lng: f64,
    /// Unix milliseconds of the fix.
    pub ts: i64,
}

/// The first frame of every tracking socket. `O` is the order as `GET /orders/{id}` shows
/// it to the watcher; the server crate owns that view.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename = "snapshot")]
pub struct Snapshot<O: Serialize> {
    pub order: O,
    /// Null while the order has no rider, or its rider no fix.
    pub rider_location: Option<Position>,
    /// Seconds; null when `rider_location` is.
    pub eta_s: Option<i64>,
}

/// A frame for a tracking socket after the snapshot. (Deserialize: in a cluster, frames
/// travel between nodes as JSON.)
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TrackFrame {
    RiderLocation {
        lat: f64,
        lng: f64,
        ts: i64,
        #[serde(skip_serializing_if = "Option::is_none")]
        heading: Option<f64>,
        eta_s: Option<i64>,
    },
    Status {
        status: OrderStatus,
        /// RFC 3339.
        at: String,
    },
    /// The rider, after pick-up, came within 300 m of the drop-off (once per order).
    Arriving { eta_s: i64 },
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn frames_are_tagged_and_keep_their_nulls() {
        let snapshot = Snapshot {
            order: json!({"id": "o"}),
            rider_location: None,
            eta_s: None,
        };
        assert_eq!(
            serde_json::to_value(&snapshot).expect("json"),
            json!({"type": "snapshot", "order": {"id": "o"}, "rider_location": null, "eta_s": null})
        );
        let located = Snapshot {
            order: json!({}),
            rider_location: Some(Position {
                lat: 1.0,
                lng: 2.0,
                ts: 3,
            }),
            eta_s: Some(40),
        };
        assert_eq!(
            serde_json::to_value(&located).expect("json")["rider_location"],
            json!({"lat": 1.0, "lng": 2.0, "ts": 3})
        );
        let location = TrackFrame::RiderLocation {
            lat: 1.0,
            lng: 2.0,
            ts: 3,
            heading: None,
            eta_s: None,
        };
        assert_eq!(
            serde_json::to_value(&location).expect("json"),
            json!({"type": "rider_location", "lat": 1.0, "lng": 2.0, "ts": 3, "eta_s": null})
        );
        let status = TrackFrame::Status {
            status: OrderStatus::PickedUp,
            at: "2026-03-14T09:31:02+00:00".into(),
        };
        assert_eq!(
            serde_json::to_value(&status).expect("json"),
            json!({"type": "status", "status": "picked_up", "at": "2026-03-14T09:31:02+00:00"})
        );
        assert_eq!(
            serde_json::to_value(TrackFrame::Arriving { eta_s: 75 }).expect("json"),
            json!({"type": "arriving", "eta_s": 75})
        );
    }
}
