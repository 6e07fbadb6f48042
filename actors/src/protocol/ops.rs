//! The ops socket's one frame (`/ws/ops`, server → admin): [`Fleet`], the whole fleet at a
//! moment, with the supply and demand per H3 cell as a GeoJSON feature collection.

use serde::Serialize;
use uuid::Uuid;

use crate::model::{OrderStatus, RiderState};

/// The `fleet` frame.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename = "fleet")]
pub struct Fleet {
    /// RFC 3339: when the frame was built.
    pub at: String,
    pub counters: Counters,
    /// Online riders with a position; left out past the listing limit, when the cells
    /// carry the picture.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub riders: Option<Vec<FleetRider>>,
    /// Open orders, oldest first.
    pub orders: Vec<FleetOrder>,
    pub cells: CellLayer,
}

/// Counts over the whole fleet, whatever the frame lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub riders_online: usize,
    pub riders_free: usize,
    pub riders_offered: usize,
    pub riders_on_delivery: usize,
    pub orders_open: usize,
    /// Open orders waiting for a pharmacist's review of their prescription.
    pub orders_awaiting_prescription: usize,
    /// Open orders waiting for their online payment.
    pub orders_awaiting_payment: usize,
}

/// An online rider on the map.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FleetRider {
    pub id: Uuid,
    pub lat: f64,
    pub lng: f64,
    pub state: RiderState,
}

/// An open order on the map.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FleetOrder {
    pub id: Uuid,
    pub status: OrderStatus,
    pub pickup: Spot,
    pub dropoff: Spot,
}

/// A bare point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spot {
    pub lat: f64,
    pub lng: f64,
}

/// The cells as a GeoJSON `FeatureCollection`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename = "FeatureCollection")]
pub struct CellLayer {
    pub features: Vec<CellFeature>,
}

/// One cell as a GeoJSON `Feature`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename = "Feature")]
pub struct CellFeature {
    pub geometry: Hexagon,
    pub properties: CellCounts,
}

/// A cell's outline as a GeoJSON `Polygon`: one closed ring of `[lng, lat]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename = "Polygon")]
pub struct Hexagon {
    pub coordinates: [Vec<[f64; 2]>; 1],
}

/// What is in a cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CellCounts {
    /// The H3 index.
    pub cell: String,
    /// Free riders in it.
    pub supply: u32,
    /// Orders in it waiting for a rider.
    pub demand: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_fleet_frame_is_tagged_geojson_included() {
        let id = Uuid::nil();
        let frame = Fleet {
            at: "2026-03-14T09:31:05+00:00".into(),
            counters: Counters {
                riders_online: 1,
                riders_free: 1,
                riders_offered: 0,
                riders_on_delivery: 0,
                orders_open: 1,
                orders_awaiting_prescription: 0,
                orders_awaiting_payment: 0,
            },
            riders: None,
            orders: vec![FleetOrder {
                id,
                status: OrderStatus::Dispatching,
                pickup: Spot { lat: 1.0, lng: 2.0 },
                dropoff: Spot { lat: 3.0, lng: 4.0 },
            }],
            cells: CellLayer {
                features: vec![CellFeature {
                    geometry: Hexagon {
                        coordinates: [vec![[2.0, 1.0], [2.5, 1.0], [2.0, 1.0]]],
                    },
                    properties: CellCounts {
                        cell: "8861892637fffff".into(),
                        supply: 1,
                        demand: 0,
                    },
                }],
            },
        };
        let v = serde_json::to_value(&frame).expect("json");
        assert_eq!(v["type"], "fleet");
        assert!(v.get("riders").is_none(), "riders left out when None");
        assert_eq!(v["orders"][0]["status"], "dispatching");
        assert_eq!(v["orders"][0]["pickup"], json!({"lat": 1.0, "lng": 2.0}));
        assert_eq!(
            v["cells"],
            json!({"type": "FeatureCollection", "features": [{"type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [[[2.0, 1.0], [2.5, 1.0], [2.0, 1.0]]]},
                "properties": {"cell": "8861892637fffff", "supply": 1, "demand": 0}}]})
        );
        let listed = Fleet {
            riders: Some(vec![FleetRider {
                id,
                lat: 1.0,
                lng: 2.0,
                state: RiderState::OnDelivery,
            }]),
            ..frame
        };
        let v = serde_json::to_value(&listed).expect("json");
        assert_eq!(v["riders"][0]["state"], "on_delivery");
    }
}
