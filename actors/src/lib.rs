//! Medify's dispatch core.
//!
//! The actors that own live state (inventory shards, order actors, rider sessions, the
//! matcher), the geographic indexes they use, and the ports the server implements. This
//! crate depends on no HTTP, SQL or Redis crate: those live in the `medify` crate, behind
//! the traits in [`ports`]. Pure logic (the order state machine, location rules, stock
//! bookkeeping, assignment, distances, place lookup) is plain functions and structs with
//! unit tests; actors are thin shells around them.

pub mod fleet;
pub mod geo;
pub mod inventory;
pub mod matcher;
pub mod model;
pub mod order;
pub mod outbox;
pub mod places;
pub mod ports;
pub mod protocol;
pub mod rider;
pub mod tracking;

/// Locks a mutex whose data stays usable after a panic elsewhere (every lock here guards
/// plain maps and slots, never a half-done invariant), instead of failing on poisoning.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
