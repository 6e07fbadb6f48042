//! The admins' fleet picture as frames: one [`OpsFeed`] per server builds a `fleet` frame
//! every [`FRAME_EVERY`] while at least one admin watches (nothing otherwise): riders by
//! state from the fleet view, open orders, and an H3 layer of supply (free riders) and
//! demand (orders waiting for one) per cell, with live counters. Frames go out through a
//! watch channel, so every socket gets the latest frame and an admin who stops reading
//! skips frames instead of queueing them. Past [`MAX_LISTED_RIDERS`] online riders the
//! frame leaves `riders` out and the cells carry the picture. The sockets that carry the
//! frames are [`crate::ws::ops`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use h3o::{CellIndex, LatLng, Resolution};
use medify_actors::fleet::{Fleet, RiderView};
use medify_actors::model::{OrderStatus, RiderState};
use medify_actors::protocol::ops::{
    CellCounts, CellFeature, CellLayer, Counters, Fleet as FleetFrame, FleetOrder, FleetRider,
    Hexagon, Spot,
};
use tokio::sync::watch;

use crate::store::orders::OrderPin;
use crate::store::Store;

/// At most two frames a second (docs/protocol.md).
pub const FRAME_EVERY: Duration = Duration::from_millis(500);
/// Past this many online riders, the frame carries cells instead of riders.
pub const MAX_LISTED_RIDERS: usize = 2_000;
/// Open orders drawn on the map (oldest first).
const MAX_ORDERS: i64 = 1_000;
/// Hexagons of about 0.7 km²: a few streets, fine enough to see where riders are short.
const CELL_RESOLUTION: Resolution = Resolution::Eight;

/// The latest ops frame, shared by every ops socket. Cheap to clone.
#[derive(Clone)]
pub struct OpsFeed {
    frames: Arc<watch::Sender<Arc<str>>>,
}

impl Default for OpsFeed {
    fn default() -> Self {
        Self::new()
    }
}

impl OpsFeed {
    pub fn new() -> Self {
        Self {
            frames: Arc::new(watch::channel(Arc::from("")).0),
        }
    }

    /// Builds frames while anyone watches, until the feed is dropped. Runs on the calling
    /// arbiter; a frame costs one database query (open orders), never one per rider.
    pub fn start(&self, fleet: Fleet, store: Store) {
        let feed = Arc::downgrade(&self.frames);
        actix_web::rt::spawn(async move {
            loop {
                // A pause after each frame, not a fixed schedule: frames are always at
                // least FRAME_EVERY apart, however long one takes to build.
                tokio::time::sleep(FRAME_EVERY).await;
                let Some(frames) = feed.upgrade() else { break };
                if frames.receiver_count() == 0 {
                    continue;
                }
                let at = chrono::Utc::now();
                match store.open_order_pins(MAX_ORDERS).await {
                    Ok(orders) => {
                        let frame = fleet_frame(at, &fleet.views(), &orders);
                        match serde_json::to_string(&frame) {
                            Ok(text) => {
                                frames.send_replace(Arc::from(text));
                            }
                            Err(e) => tracing::error!(error = %e, "could not encode an ops frame"),
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "ops frame skipped: open orders not read"),
                }
            }
        });
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<str>> {
        self.frames.subscribe()
    }
}

fn cell_of(lat: f64, lng: f64) -> Option<CellIndex> {
    LatLng::new(lat, lng)
        .ok()
        .map(|p| p.to_cell(CELL_RESOLUTION))
}

/// A hexagon as a GeoJSON feature with its supply and demand.
fn cell_feature(cell: CellIndex, supply: u32, demand: u32) -> CellFeature {
    let mut ring: Vec<[f64; 2]> = cell.boundary().iter().map(|p| [p.lng(), p.lat()]).collect();
    if let Some(&first) = ring.first() {
        ring.push(first); // GeoJSON rings are closed.
    }
    CellFeature {
        geometry: Hexagon {
            coordinates: [ring],
        },
        properties: CellCounts {
            cell: cell.to_string(),
            supply,
            demand,
        },
    }
}

/// The `fleet` frame for the moment `at`.
pub fn fleet_frame(
    at: chrono::DateTime<chrono::Utc>,
    riders: &[RiderView],
    orders: &[OrderPin],
) -> FleetFrame {
    let online: Vec<&RiderView> = riders.iter().filter(|r| r.online).collect();
    let count = |state: RiderState| online.iter().filter(|r| r.state == state).count();
    let mut cells: HashMap<CellIndex, (u32, u32)> = HashMap::new();
    for rider in online.iter().filter(|r| r.state == RiderState::Free) {
        if let Some(cell) = rider.last_location.and_then(|l| cell_of(l.lat, l.lng)) {
            cells.entry(cell).or_default().0 += 1;
        }
    }
    for order in orders
        .iter()
        .filter(|o| matches!(o.status, OrderStatus::Confirmed | OrderStatus::Dispatching))
    {
        if let Some(cell) = cell_of(order.pickup_lat, order.pickup_lng) {
            cells.entry(cell).or_default().1 += 1;
        }
    }
    let features = cells
        .into_iter()
        .map(|(cell, (supply, demand))| cell_feature(cell, supply, demand))
        .collect();
    let riders = (online.len() <= MAX_LISTED_RIDERS).then(|| {
        online
            .iter()
            .filter_map(|r| {
                let at = r.last_location?;
                Some(FleetRider {
                    id: r.id,
                    lat: at.lat,
                    lng: at.lng,
                    state: r.state,
                })
            })
            .collect()
    });
    FleetFrame {
        at: at.to_rfc3339(),
        counters: Counters {
            riders_online: online.len(),
            riders_free: count(RiderState::Free),
            riders_offered: count(RiderState::Offered),
            riders_on_delivery: count(RiderState::OnDelivery),
            orders_open: orders.len(),
            orders_awaiting_prescription: orders
                .iter()
                .filter(|o| o.status == OrderStatus::AwaitingPrescription)
                .count(),
            orders_awaiting_payment: orders
                .iter()
                .filter(|o| o.status == OrderStatus::AwaitingPayment)
                .count(),
        },
        riders,
        orders: orders
            .iter()
            .map(|o| FleetOrder {
                id: o.id,
                status: o.status,
                pickup: Spot {
                    lat: o.pickup_lat,
                    lng: o.pickup_lng,
                },
                dropoff: Spot {
                    lat: o.dropoff_lat,
                    lng: o.dropoff_lng,
                },
            })
            .collect(),
        cells: CellLayer { features },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medify_actors::fleet::LastLocation;
    use uuid::Uuid;

    /// The frame as the socket sends it.
    fn wire(frame: FleetFrame) -> serde_json::Value {
        serde_json::to_value(frame).expect("json")
    }

    fn free_rider(lat: f64, lng: f64) -> RiderView {
        let mut view = RiderView::new(Uuid::now_v7());
        view.online = true;
        view.available = true;
        view.state = RiderState::Free;
        view.last_location = Some(LastLocation { lat, lng, ts: 0 });
        view
    }

    #[test]
    fn a_big_fleet_is_drawn_as_cells() {
        let small: Vec<RiderView> = (0..MAX_LISTED_RIDERS)
            .map(|i| free_rider(12.9 + i as f64 * 1e-5, 77.6))
            .collect();
        let frame = wire(fleet_frame(chrono::Utc::now(), &small, &[]));
        assert_eq!(
            frame["riders"].as_array().map(Vec::len),
            Some(MAX_LISTED_RIDERS)
        );

        let mut big = small;
        big.push(free_rider(12.95, 77.6));
        let frame = wire(fleet_frame(chrono::Utc::now(), &big, &[]));
        assert!(
            frame.get("riders").is_none(),
            "riders listed past the limit"
        );
        assert_eq!(frame["counters"]["riders_free"], MAX_LISTED_RIDERS + 1);
        let supply: u64 = frame["cells"]["features"]
            .as_array()
            .map(|f| {
                f.iter()
                    .filter_map(|c| c["properties"]["supply"].as_u64())
                    .sum()
            })
            .unwrap_or(0);
        assert_eq!(
            supply,
            MAX_LISTED_RIDERS as u64 + 1,
            "every rider in a cell"
        );
    }
}
