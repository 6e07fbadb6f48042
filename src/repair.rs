//! Stock reservations a crash left behind: held for an order that is over, or for an order
//! that was never stored. They are settled through the inventory shards (so each shard's
//! book stays true), once before serving and then every minute. One without an order waits
//! `RESERVATION_REPAIR_GRACE_S` (a live process may still be storing its order) and is then
//! released only if no order is stored under it by the time its row is locked; the order
//! insert locks the same row and needs it held, so a process stalled past the grace fails
//! its placement instead of storing an order without stock.

use std::time::Duration;

use medify_actors::inventory::Inventory;
use medify_actors::ports::Settle;

use crate::store::Store;

/// How often held reservations are checked after start-up.
const REPAIR_EVERY: Duration = Duration::from_secs(60);

/// What one repair pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Repaired {
    pub released: usize,
    pub committed: usize,
}

/// Settles every reservation that needs it; a reservation another pass or process settled
/// first is simply skipped by its shard.
pub async fn repair_reservations(
    store: &Store,
    inventory: &Inventory,
    grace: Duration,
) -> anyhow::Result<Repaired> {
    let mut done = Repaired::default();
    for (id, pharmacy, commit, placed) in store.reservations_to_repair(grace).await? {
        let outcome = match (commit, placed) {
            (true, _) => inventory.commit(id, pharmacy).await?,
            (false, true) => inventory.release(id, pharmacy).await?,
            // No order was stored when this was read; one stored since keeps it.
            (false, false) => inventory.release_unplaced(id, pharmacy).await?,
        };
        if matches!(outcome, Settle::Done { .. }) {
            if commit {
                done.committed += 1;
            } else {
                done.released += 1;
            }
        }
    }
    Ok(done)
}

/// Repeats [`repair_reservations`] every minute for the life of the process.
pub fn spawn_reservation_repair(store: Store, inventory: Inventory, grace: Duration) {
    actix_web::rt::spawn(async move {
        loop {
            tokio::time::sleep(REPAIR_EVERY).await;
            match repair_reservations(&store, &inventory, grace).await {
                Ok(Repaired {
                    released: 0,
                    committed: 0,
                }) => {}
                Ok(done) => tracing::warn!(
                    released = done.released,
                    committed = done.committed,
                    "settled stock reservations left by a crash"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "reservation repair failed; retrying in a minute")
                }
            }
        }
    });
}
