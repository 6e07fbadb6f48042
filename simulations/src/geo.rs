//! Flat-enough geometry for a city: points, great-circle distances, and moving a point a
//! given number of metres towards another.

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Mean Earth radius, metres (the same sphere the server's haversine uses).
const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// A WGS84 position in degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub lat: f64,
    pub lng: f64,
}

impl Point {
    pub fn new(lat: f64, lng: f64) -> Self {
        Self { lat, lng }
    }

    /// Great-circle distance in metres (haversine).
    pub fn distance_m(self, other: Point) -> f64 {
        let (phi1, phi2) = (self.lat.to_radians(), other.lat.to_radians());
        let dphi = phi2 - phi1;
        let dlambda = (other.lng - self.lng).to_radians();
        let a =
            (dphi / 2.0).sin().powi(2) + phi1.cos() * phi2.cos() * (dlambda / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_M * a.sqrt().min(1.0).asin()
    }

    /// The point `north_m` metres north and `east_m` metres east of this one (a local
    /// tangent-plane approximation, accurate to well under a metre over a few kilometres).
    pub fn offset(self, north_m: f64, east_m: f64) -> Point {
        let dlat = (north_m / EARTH_RADIUS_M).to_degrees();
        let dlng = (east_m / (EARTH_RADIUS_M * self.lat.to_radians().cos())).to_degrees();
        Point::new(self.lat + dlat, self.lng + dlng)
    }

    /// Initial bearing towards `other`, degrees clockwise from north in [0, 360).
    pub fn bearing_to(self, other: Point) -> f64 {
        let (phi1, phi2) = (self.lat.to_radians(), other.lat.to_radians());
        let dlambda = (other.lng - self.lng).to_radians();
        let y = dlambda.sin() * phi2.cos();
        let x = phi1.cos() * phi2.sin() - phi1.sin() * phi2.cos() * dlambda.cos();
        (y.atan2(x).to_degrees() + 360.0) % 360.0
    }

    /// Moves up to `metres` along the straight segment towards `target`; returns the new
    /// point and whether the target was reached.
    pub fn step_towards(self, target: Point, metres: f64) -> (Point, bool) {
        let left = self.distance_m(target);
        if left <= metres || left < 0.01 {
            return (target, true);
        }
        let f = metres / left;
        // Linear interpolation in degrees: fine for segments of a few kilometres.
        let p = Point::new(
            self.lat + (target.lat - self.lat) * f,
            self.lng + (target.lng - self.lng) * f,
        );
        (p, false)
    }

    /// A uniformly random point within `radius_m` of this one.
    pub fn random_within(self, radius_m: f64, rng: &mut impl Rng) -> Point {
        // sqrt for a uniform density over the disc, not bunched at the centre.
        let r = radius_m * rng.random::<f64>().sqrt();
        let theta = rng.random::<f64>() * std::f64::consts::TAU;
        self.offset(r * theta.cos(), r * theta.sin())
    }

    /// This point displaced by GPS noise: a random error of up to `noise_m` metres.
    pub fn jitter(self, noise_m: f64, rng: &mut impl Rng) -> Point {
        if noise_m <= 0.0 {
            return self;
        }
        self.random_within(noise_m, rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn offsets_and_distances_agree() {
        let p = Point::new(12.9716, 77.5946);
        let q = p.offset(300.0, 400.0);
        assert!((p.distance_m(q) - 500.0).abs() < 1.0, "{}", p.distance_m(q));
        let b = p.bearing_to(p.offset(0.0, 100.0));
        assert!((b - 90.0).abs() < 0.5, "{b}");
    }

    #[test]
    fn stepping_reaches_the_target_and_never_overshoots() {
        let p = Point::new(12.97, 77.59);
        let t = p.offset(100.0, 0.0);
        let (q, done) = p.step_towards(t, 40.0);
        assert!(!done);
        assert!((p.distance_m(q) - 40.0).abs() < 0.5);
        let (r, done) = q.step_towards(t, 80.0);
        assert!(done);
        assert_eq!(r, t);
    }

    #[test]
    fn random_points_stay_in_the_disc() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let c = Point::new(12.97, 77.59);
        for _ in 0..1000 {
            assert!(c.distance_m(c.random_within(250.0, &mut rng)) <= 250.5);
        }
    }
}
