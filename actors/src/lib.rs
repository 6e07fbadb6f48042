//! Medify's dispatch core.
//!
//! The actors that own live state (inventory shards now; orders and rider sessions next),
//! the geographic indexes they use, and the ports the server implements. This crate
//! depends on no HTTP, SQL or Redis crate: those live in the `medify` crate, behind the
//! traits in [`ports`]. Pure logic (stock bookkeeping, distances, place lookup) is plain
//! functions and structs with unit tests; actors are thin shells around them.

pub mod fleet;
pub mod geo;
pub mod inventory;
pub mod matcher;
pub mod order;
pub mod places;
pub mod ports;
pub mod protocol;
pub mod rider;
