//! Points on the Earth, distances, and the H3 cells around them.
//!
//! Distances are great-circle (haversine) on a sphere of the Earth's mean radius, which is
//! within 0.5% of the ellipsoidal distance: plenty for ranking riders and pharmacies across a
//! city. (The `geo` crate computes the same formula; ten lines here spare the build its
//! dependency tree.)

use h3o::{CellIndex, LatLng, Resolution};

/// Mean Earth radius (IUGG), metres.
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// A valid WGS84 position: finite, latitude in [-90, 90], longitude in [-180, 180]. On the
/// wire between nodes it is `{"lat":…,"lng":…}`, checked again when read.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "LatLngPair")]
pub struct Point {
    lat: f64,
    lng: f64,
}

/// Why a coordinate pair is not a [`Point`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PointError {
    #[error("latitude must be a finite number between -90 and 90")]
    Latitude,
    #[error("longitude must be a finite number between -180 and 180")]
    Longitude,
}

#[derive(serde::Deserialize)]
struct LatLngPair {
    lat: f64,
    lng: f64,
}

impl TryFrom<LatLngPair> for Point {
    type Error = PointError;
    fn try_from(p: LatLngPair) -> Result<Self, PointError> {
        Point::new(p.lat, p.lng)
    }
}

impl Point {
    pub fn new(lat: f64, lng: f64) -> Result<Self, PointError> {
        if !lat.is_finite() || !(-90.0..=90.0).contains(&lat) {
            return Err(PointError::Latitude);
        }
        if !lng.is_finite() || !(-180.0..=180.0).contains(&lng) {
            return Err(PointError::Longitude);
        }
        Ok(Self { lat, lng })
    }

    pub fn lat(self) -> f64 {
        self.lat
    }

    pub fn lng(self) -> f64 {
        self.lng
    }

    /// The H3 cell containing this point at `res`.
    pub fn cell(self, res: Resolution) -> CellIndex {
        // `LatLng::new` only rejects non-finite numbers, which a `Point` never holds.
        LatLng::new(self.lat, self.lng)
            .expect("a Point is always finite")
            .to_cell(res)
    }

    /// Great-circle distance in metres.
    pub fn distance_m(self, other: Point) -> f64 {
        haversine_m(self, other)
    }
}

/// Great-circle distance between two points, in metres.
pub fn haversine_m(a: Point, b: Point) -> f64 {
    let (lat1, lat2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = lat2 - lat1;
    let dlng = (b.lng - a.lng).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlng / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
}

/// The grid-disk radius `k` (in rings of cells at `res`) that covers every point within
/// `radius_m` of any point in the centre cell.
///
/// Neighbouring hexagon centres are √3 × edge apart; H3 cells vary in size over the globe,
/// so the edge is taken at 70% of the average to stay on the safe side, plus one ring for
/// a point near its cell's border.
pub fn disk_k(radius_m: f64, res: Resolution) -> u32 {
    let spacing = 3f64.sqrt() * res.edge_length_m() * 0.7;
    let rings = (radius_m.max(0.0) / spacing).ceil();
    // Bounded: callers cap the radius; this keeps a bad input from asking for millions.
    (rings as u32).saturating_add(1).min(2_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(lat: f64, lng: f64) -> Point {
        Point::new(lat, lng).expect("valid")
    }

    #[test]
    fn rejects_non_finite_and_out_of_range() {
        assert_eq!(Point::new(f64::NAN, 0.0), Err(PointError::Latitude));
        assert_eq!(Point::new(91.0, 0.0), Err(PointError::Latitude));
        assert_eq!(Point::new(0.0, f64::INFINITY), Err(PointError::Longitude));
        assert_eq!(Point::new(0.0, -180.5), Err(PointError::Longitude));
        assert!(Point::new(-90.0, 180.0).is_ok());
    }

    #[test]
    fn known_distances() {
        // One degree of latitude is about 111.2 km on the mean sphere.
        let d = haversine_m(p(0.0, 0.0), p(1.0, 0.0));
        assert!((d - 111_195.0).abs() < 10.0, "{d}");
        // Bengaluru MG Road to Koramangala, about 4.6 km.
        let d = haversine_m(p(12.9756, 77.6050), p(12.9352, 77.6245));
        assert!((4_900.0..5_100.0).contains(&d), "{d}");
        assert_eq!(haversine_m(p(10.0, 10.0), p(10.0, 10.0)), 0.0);
    }

    #[test]
    fn disks_cover_their_radius() {
        // Every point 5 km away (in 16 directions) lies inside the disk around the origin.
        let origin = p(12.9716, 77.5946);
        for res in [Resolution::Seven, Resolution::Nine] {
            let disk: Vec<CellIndex> = origin.cell(res).grid_disk(disk_k(5_000.0, res));
            for i in 0..16 {
                let bearing = f64::from(i) * std::f64::consts::TAU / 16.0;
                let dlat = 5_000.0 * bearing.cos() / 111_195.0;
                let dlng = 5_000.0 * bearing.sin() / (111_195.0 * origin.lat().to_radians().cos());
                let q = p(origin.lat() + dlat, origin.lng() + dlng);
                assert!(disk.contains(&q.cell(res)), "res {res:?} bearing {i}");
            }
        }
    }
}
