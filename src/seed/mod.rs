//! `medify seed`: a demo data set so a new user sees a populated catalog.
//!
//! About 250 medicines (`medicines.txt`, written for this project: common generics with a
//! well-known brand each, in their usual strengths), N pharmacies scattered over a city, and
//! stock for each. Everything is derived deterministically from the inputs (ids, positions,
//! quantities), and every insert skips rows that exist, so running it again changes nothing
//! and never overwrites stock that has moved since.

use medify_actors::geo::Point;
use uuid::Uuid;

use crate::catalog::cell_bits;
use crate::store::catalog::{Medicine, PharmacyRow};
use crate::store::{now, Store};

const DATA: &str = include_str!("medicines.txt");

/// What to seed.
#[derive(Debug, Clone, Copy)]
pub struct SeedOptions {
    pub pharmacies: usize,
    /// Centre of the city.
    pub center: Point,
    /// Pharmacies are spread within this distance of the centre.
    pub radius_m: f64,
}

/// What seeding did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SeedReport {
    pub medicines_added: usize,
    pub medicines_total: usize,
    pub pharmacies_added: usize,
    pub stock_rows_added: usize,
}

/// SplitMix64: a tiny, stable pseudo-random sequence (stable across versions, unlike
/// `rand`'s seeded generators, which is what makes the seed idempotent).
struct Mix(u64);

impl Mix {
    fn new(key: &str) -> Self {
        // FNV-1a of the key as the seed.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in key.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        Self(h)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn uuid(&mut self) -> Uuid {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next().to_be_bytes());
        bytes[8..].copy_from_slice(&self.next().to_be_bytes());
        uuid::Builder::from_custom_bytes(bytes).into_uuid()
    }
}

/// The catalog described by `medicines.txt`.
pub fn medicines() -> Vec<Medicine> {
    let at = now();
    let mut out = Vec::new();
    for line in DATA
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let cols: Vec<&str> = line.split('|').map(str::trim).collect();
        let [generic, brand, form, strengths, price, rx] = cols[..] else {
            continue;
        };
        let base: i64 = price.parse().unwrap_or(100);
        for (i, strength) in strengths.split(',').map(str::trim).enumerate() {
            let name = format!("{generic} {strength} {form}");
            let sku = format!(
                "MDF-{}-{}",
                generic
                    .chars()
                    .filter(char::is_ascii_alphanumeric)
                    .take(6)
                    .collect::<String>()
                    .to_uppercase(),
                strength
                    .chars()
                    .filter(char::is_ascii_alphanumeric)
                    .collect::<String>()
                    .to_uppercase()
            );
            // Higher strengths cost a little more.
            let price_cents = base + base * i64::try_from(i).unwrap_or(0) * 6 / 10;
            out.push(Medicine {
                id: Mix::new(&format!("medicine:{sku}:{form}")).uuid(),
                name,
                generic_name: Some(generic.to_owned()),
                brand: Some(brand.to_owned()),
                sku: format!(
                    "{sku}-{}",
                    form.chars().take(3).collect::<String>().to_uppercase()
                ),
                price_cents,
                rx_required: rx == "1",
                created_at: at,
                updated_at: at,
            });
        }
    }
    out
}

/// `n` pharmacies spread uniformly over a disk around the centre.
pub fn pharmacies(options: &SeedOptions) -> Vec<PharmacyRow> {
    let names = [
        "Apollo",
        "MedPlus",
        "Wellness",
        "Care",
        "City",
        "Green Cross",
        "Lifeline",
        "Sunrise",
        "Trust",
        "Family",
    ];
    let streets = [
        "Main Road",
        "Cross",
        "Layout",
        "Circle",
        "Nagar",
        "Market Street",
    ];
    (0..options.pharmacies)
        .map(|i| {
            let mut mix = Mix::new(&format!(
                "pharmacy:{i}:{:.5}:{:.5}",
                options.center.lat(),
                options.center.lng()
            ));
            let id = mix.uuid();
            // Uniform over the disk: radius grows with the square root.
            let r = options.radius_m * mix.unit().sqrt();
            let bearing = mix.unit() * std::f64::consts::TAU;
            let dlat = r * bearing.cos() / 111_195.0;
            let dlng =
                r * bearing.sin() / (111_195.0 * options.center.lat().to_radians().cos().max(0.01));
            let at = Point::new(
                (options.center.lat() + dlat).clamp(-90.0, 90.0),
                (options.center.lng() + dlng).clamp(-180.0, 180.0),
            )
            .unwrap_or(options.center);
            let name = format!("{} Pharmacy #{}", names[i % names.len()], i + 1);
            let address = format!(
                "{} {}, {}",
                1 + mix.next() % 200,
                streets[i % streets.len()],
                "Demo City"
            );
            PharmacyRow {
                id,
                name,
                lat: at.lat(),
                lng: at.lng(),
                address,
                h3_cell: cell_bits(at),
            }
        })
        .collect()
}

/// Loads the demo data into `store`; idempotent.
pub async fn run(store: &Store, options: &SeedOptions) -> Result<SeedReport, sqlx::Error> {
    let medicines = medicines();
    let pharmacies = pharmacies(options);
    let mut report = SeedReport {
        medicines_total: medicines.len(),
        ..SeedReport::default()
    };
    report.medicines_added = store.seed_medicines(&medicines).await?;
    report.pharmacies_added = store.seed_pharmacies(&pharmacies).await?;
    // The medicines that really exist (a manual one may hold a seed sku).
    let live: std::collections::HashSet<Uuid> = store
        .all_medicines()
        .await?
        .into_iter()
        .map(|m| m.id)
        .collect();
    for p in &pharmacies {
        let mut mix = Mix::new(&format!("stock:{}", p.id));
        let lines: Vec<(Uuid, i64)> = medicines
            .iter()
            .filter(|m| live.contains(&m.id))
            .filter_map(|m| {
                let roll = mix.unit();
                let qty = 5 + i64::try_from(mix.next() % 196).unwrap_or(0);
                // About 70% of the catalog on each shelf.
                (roll < 0.7).then_some((m.id, qty))
            })
            .collect();
        report.stock_rows_added += store.seed_stock(p.id, &lines).await?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_is_a_few_hundred_unique_medicines() {
        let meds = medicines();
        assert!((200..=400).contains(&meds.len()), "{}", meds.len());
        let skus: std::collections::HashSet<&str> = meds.iter().map(|m| m.sku.as_str()).collect();
        let ids: std::collections::HashSet<Uuid> = meds.iter().map(|m| m.id).collect();
        assert_eq!(skus.len(), meds.len(), "duplicate sku");
        assert_eq!(ids.len(), meds.len(), "duplicate id");
        assert!(meds.iter().any(|m| m.name == "Paracetamol 500 mg Tablet"));
        assert!(meds.iter().all(|m| m.price_cents > 0));
    }

    #[test]
    fn pharmacies_are_deterministic_and_inside_the_city() {
        let center = Point::new(12.9716, 77.5946).expect("valid");
        let options = SeedOptions {
            pharmacies: 30,
            center,
            radius_m: 8_000.0,
        };
        let a = pharmacies(&options);
        let b = pharmacies(&options);
        assert_eq!(a, b);
        for p in &a {
            let at = Point::new(p.lat, p.lng).expect("valid");
            assert!(center.distance_m(at) <= 8_050.0, "{p:?}");
        }
    }
}
