//! Inventory shards: the one place stock changes, one change at a time per shard.
//!
//! Pharmacies are hashed onto N [`InventoryShard`] actors, each on its own arbiter (thread)
//! under an actix `Supervisor`. A shard handles reserve / commit / release / set-stock for
//! its pharmacies strictly one at a time (`AtomicResponse`: no other message is looked at
//! until the storage write has finished), so two requests for the last unit can never
//! interleave. Every change is written through the [`StockLedger`] port in one transaction
//! that also records the reservation, and only then applied to the shard's in-memory
//! [`StockBook`]; the database also enforces `0 <= reserved <= quantity` on its own, so even
//! a stale book (another node changed the stock) cannot oversell, it can only refuse early.
//!
//! The book is a cache of storage: it is loaded per pharmacy on first use, reloaded when it
//! is older than [`STALE_AFTER`] and would refuse a request, and thrown away when the shard
//! restarts. A storage error stops the shard (its book may no longer match storage); the
//! supervisor restarts it, empty, with its mailbox intact.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use actix::prelude::*;
use uuid::Uuid;

use crate::ports::{
    LedgerError, LedgerReserve, Line, SetStock, Settle, Shortage, StockLedger, StockLevel,
};

/// How old a pharmacy's book may be before a refusal is double-checked against storage.
pub const STALE_AFTER: Duration = Duration::from_secs(2);

/// Sums duplicate medicines and orders lines by medicine id (so every transaction touches
/// rows in the same order, which keeps PostgreSQL free of lock-order deadlocks).
pub fn merge_lines(lines: &[Line]) -> Vec<Line> {
    let mut merged: Vec<Line> = Vec::with_capacity(lines.len());
    let mut sorted = lines.to_vec();
    sorted.sort_by_key(|l| l.medicine_id);
    for line in sorted {
        match merged.last_mut() {
            Some(last) if last.medicine_id == line.medicine_id => last.qty += line.qty,
            _ => merged.push(line),
        }
    }
    merged
}

#[derive(Debug, Default)]
struct PharmacyBook {
    levels: HashMap<Uuid, StockLevel>,
    loaded_at: Option<Instant>,
}

/// In-memory stock of the pharmacies a shard has touched. Pure bookkeeping, no I/O.
#[derive(Debug, Default)]
pub struct StockBook {
    pharmacies: HashMap<Uuid, PharmacyBook>,
}

impl StockBook {
    /// When the pharmacy's stock was loaded, if it is in the book.
    pub fn loaded_at(&self, pharmacy_id: Uuid) -> Option<Instant> {
        self.pharmacies.get(&pharmacy_id).and_then(|p| p.loaded_at)
    }

    pub fn load(&mut self, pharmacy_id: Uuid, levels: HashMap<Uuid, StockLevel>) {
        self.pharmacies.insert(
            pharmacy_id,
            PharmacyBook {
                levels,
                loaded_at: Some(Instant::now()),
            },
        );
    }

    pub fn forget(&mut self, pharmacy_id: Uuid) {
        self.pharmacies.remove(&pharmacy_id);
    }

    pub fn level(&self, pharmacy_id: Uuid, medicine_id: Uuid) -> StockLevel {
        self.pharmacies
            .get(&pharmacy_id)
            .and_then(|p| p.levels.get(&medicine_id))
            .copied()
            .unwrap_or_default()
    }

    /// The lines that cannot be reserved now.
    pub fn shortages(&self, pharmacy_id: Uuid, lines: &[Line]) -> Vec<Shortage> {
        lines
            .iter()
            .filter_map(|line| {
                let available = self.level(pharmacy_id, line.medicine_id).available();
                (available < line.qty).then_some(Shortage {
                    medicine_id: line.medicine_id,
                    requested: line.qty,
                    available: available.max(0),
                })
            })
            .collect()
    }

    fn apply(&mut self, pharmacy_id: Uuid, lines: &[Line], f: impl Fn(&mut StockLevel, i64)) {
        if let Some(book) = self.pharmacies.get_mut(&pharmacy_id) {
            for line in lines {
                f(book.levels.entry(line.medicine_id).or_default(), line.qty);
            }
        }
    }

    pub fn reserve(&mut self, pharmacy_id: Uuid, lines: &[Line]) {
        self.apply(pharmacy_id, lines, |l, q| l.reserved += q);
    }

    pub fn commit(&mut self, pharmacy_id: Uuid, lines: &[Line]) {
        self.apply(pharmacy_id, lines, |l, q| {
            l.quantity -= q;
            l.reserved -= q;
        });
    }

    pub fn release(&mut self, pharmacy_id: Uuid, lines: &[Line]) {
        self.apply(pharmacy_id, lines, |l, q| l.reserved -= q);
    }

    pub fn set_quantities(&mut self, pharmacy_id: Uuid, lines: &[Line]) {
        self.apply(pharmacy_id, lines, |l, q| l.quantity = q);
    }
}

/// Why the inventory could not answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InventoryError {
    #[error(transparent)]
    Storage(#[from] LedgerError),
    #[error("inventory shard unavailable: {0}")]
    Unavailable(String),
}

/// The answer to a reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveOutcome {
    Reserved,
    Insufficient(Vec<Shortage>),
}

/// Reserve `lines` at `pharmacy_id` under reservation `id`, all or nothing. Retrying with
/// the same `id` is safe: it does not reserve twice.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<ReserveOutcome, InventoryError>")]
pub struct Reserve {
    pub id: Uuid,
    pub pharmacy_id: Uuid,
    pub lines: Vec<Line>,
}

/// Pick-up: the reserved units leave the shelf.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<Settle, InventoryError>")]
pub struct Commit {
    pub id: Uuid,
    pub pharmacy_id: Uuid,
}

/// Cancel or failure: the reserved units go back on sale.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<Settle, InventoryError>")]
pub struct Release {
    pub id: Uuid,
    pub pharmacy_id: Uuid,
    /// Only if no order was stored under `id` ([`StockLedger::release_unplaced`]).
    pub unplaced: bool,
}

/// New shelf quantities for some medicines of a pharmacy.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<SetStock, InventoryError>")]
pub struct SetQuantities {
    pub pharmacy_id: Uuid,
    pub lines: Vec<Line>,
}

/// Makes the shard fail as a crash would (tests and drills): it stops, and its supervisor
/// restarts it with an empty book.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct InjectFault;

/// One shard. See the module documentation.
pub struct InventoryShard {
    index: usize,
    ledger: Arc<dyn StockLedger>,
    book: Arc<Mutex<StockBook>>,
    restarts: u64,
}

fn lock(book: &Mutex<StockBook>) -> MutexGuard<'_, StockBook> {
    // The book is only touched between awaits by one handler at a time; a poisoned lock
    // can only come from a panic in pure bookkeeping, and the data is a cache anyway.
    book.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl InventoryShard {
    pub fn new(index: usize, ledger: Arc<dyn StockLedger>) -> Self {
        Self {
            index,
            ledger,
            book: Arc::new(Mutex::new(StockBook::default())),
            restarts: 0,
        }
    }
}

impl Actor for InventoryShard {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Self::Context) {
        tracing::debug!(
            shard = self.index,
            restarts = self.restarts,
            "inventory shard started"
        );
    }
}

impl Supervised for InventoryShard {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.restarts += 1;
        tracing::warn!(
            shard = self.index,
            restarts = self.restarts,
            "inventory shard restarting"
        );
        self.book = Arc::new(Mutex::new(StockBook::default()));
    }
}

async fn load(
    ledger: &dyn StockLedger,
    book: &Mutex<StockBook>,
    pharmacy_id: Uuid,
) -> Result<(), LedgerError> {
    let levels = ledger.load_pharmacy(pharmacy_id).await?;
    lock(book).load(pharmacy_id, levels);
    Ok(())
}

async fn reserve(
    ledger: &dyn StockLedger,
    book: &Mutex<StockBook>,
    msg: Reserve,
) -> Result<ReserveOutcome, LedgerError> {
    let lines = merge_lines(&msg.lines);
    let pharmacy = msg.pharmacy_id;
    let loaded_at = lock(book).loaded_at(pharmacy);
    if loaded_at.is_none() {
        load(ledger, book, pharmacy).await?;
    }
    let mut short = lock(book).shortages(pharmacy, &lines);
    if !short.is_empty() && loaded_at.is_some_and(|at| at.elapsed() > STALE_AFTER) {
        // The book may be stale (stock changed elsewhere): look again before refusing.
        load(ledger, book, pharmacy).await?;
        short = lock(book).shortages(pharmacy, &lines);
    }
    if !short.is_empty() {
        return Ok(ReserveOutcome::Insufficient(short));
    }
    match ledger.reserve(msg.id, pharmacy, lines.clone()).await? {
        LedgerReserve::Reserved => {
            lock(book).reserve(pharmacy, &lines);
            Ok(ReserveOutcome::Reserved)
        }
        // A retry: the first attempt's effect is already in storage and in the book.
        LedgerReserve::AlreadyExists => Ok(ReserveOutcome::Reserved),
        LedgerReserve::Insufficient(short) => {
            // Storage disagreed with the book: it is stale, reload it next time.
            lock(book).forget(pharmacy);
            Ok(ReserveOutcome::Insufficient(short))
        }
    }
}

/// How a reservation is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    Commit,
    Release,
    ReleaseUnplaced,
}

async fn settle(
    ledger: &dyn StockLedger,
    book: &Mutex<StockBook>,
    id: Uuid,
    how: How,
) -> Result<Settle, LedgerError> {
    let outcome = match how {
        How::Commit => ledger.commit(id).await?,
        How::Release => ledger.release(id).await?,
        How::ReleaseUnplaced => ledger.release_unplaced(id).await?,
    };
    if let Settle::Done { pharmacy_id, lines } = &outcome {
        let mut book = lock(book);
        if how == How::Commit {
            book.commit(*pharmacy_id, lines);
        } else {
            book.release(*pharmacy_id, lines);
        }
    }
    Ok(outcome)
}

async fn set_quantities(
    ledger: &dyn StockLedger,
    book: &Mutex<StockBook>,
    msg: SetQuantities,
) -> Result<SetStock, LedgerError> {
    let lines = merge_lines(&msg.lines);
    let outcome = ledger.set_stock(msg.pharmacy_id, lines.clone()).await?;
    if outcome == SetStock::Done {
        let mut book = lock(book);
        if book.loaded_at(msg.pharmacy_id).is_some() {
            book.set_quantities(msg.pharmacy_id, &lines);
        }
    }
    Ok(outcome)
}

/// Runs one storage-backed step atomically; a storage error stops the shard.
fn atomic<T: 'static>(
    shard: &InventoryShard,
    step: impl FnOnce(Arc<dyn StockLedger>, Arc<Mutex<StockBook>>) -> BoxedStep<T>,
) -> AtomicResponse<InventoryShard, Result<T, InventoryError>> {
    let fut = step(shard.ledger.clone(), shard.book.clone());
    AtomicResponse::new(Box::pin(actix::fut::wrap_future::<_, InventoryShard>(fut).map(
        |result: Result<T, LedgerError>, act, ctx| {
            result.map_err(|e| {
                tracing::error!(shard = act.index, error = %e, "inventory shard: storage failed, restarting");
                ctx.stop();
                InventoryError::Storage(e)
            })
        },
    )))
}

type BoxedStep<T> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, LedgerError>>>>;

impl Handler<Reserve> for InventoryShard {
    type Result = AtomicResponse<Self, Result<ReserveOutcome, InventoryError>>;
    fn handle(&mut self, msg: Reserve, _: &mut Context<Self>) -> Self::Result {
        atomic(self, |ledger, book| {
            Box::pin(async move { reserve(&*ledger, &book, msg).await })
        })
    }
}

impl Handler<Commit> for InventoryShard {
    type Result = AtomicResponse<Self, Result<Settle, InventoryError>>;
    fn handle(&mut self, msg: Commit, _: &mut Context<Self>) -> Self::Result {
        atomic(self, |ledger, book| {
            Box::pin(async move { settle(&*ledger, &book, msg.id, How::Commit).await })
        })
    }
}

impl Handler<Release> for InventoryShard {
    type Result = AtomicResponse<Self, Result<Settle, InventoryError>>;
    fn handle(&mut self, msg: Release, _: &mut Context<Self>) -> Self::Result {
        atomic(self, |ledger, book| {
            let how = if msg.unplaced {
                How::ReleaseUnplaced
            } else {
                How::Release
            };
            Box::pin(async move { settle(&*ledger, &book, msg.id, how).await })
        })
    }
}

impl Handler<SetQuantities> for InventoryShard {
    type Result = AtomicResponse<Self, Result<SetStock, InventoryError>>;
    fn handle(&mut self, msg: SetQuantities, _: &mut Context<Self>) -> Self::Result {
        atomic(self, |ledger, book| {
            Box::pin(async move { set_quantities(&*ledger, &book, msg).await })
        })
    }
}

impl Handler<InjectFault> for InventoryShard {
    type Result = ();
    fn handle(&mut self, _: InjectFault, ctx: &mut Context<Self>) {
        tracing::warn!(shard = self.index, "inventory shard: fault injected");
        ctx.stop();
    }
}

struct Shards {
    addrs: Vec<Addr<InventoryShard>>,
    arbiters: Vec<ArbiterHandle>,
}

impl Drop for Shards {
    fn drop(&mut self) {
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
    }
}

/// The set of shards, and the routing of a pharmacy to its shard. Cheap to clone.
#[derive(Clone)]
pub struct Inventory {
    shards: Arc<Shards>,
}

fn mailbox(e: MailboxError) -> InventoryError {
    InventoryError::Unavailable(e.to_string())
}

impl Inventory {
    /// Starts `count` supervised shards, each on its own arbiter. Must be called inside a
    /// running actix `System`.
    pub fn start(count: usize, ledger: Arc<dyn StockLedger>) -> Self {
        let count = count.max(1);
        let mut addrs = Vec::with_capacity(count);
        let mut arbiters = Vec::with_capacity(count);
        for index in 0..count {
            let arbiter = Arbiter::new().handle();
            let ledger = ledger.clone();
            addrs.push(Supervisor::start_in_arbiter(&arbiter, move |_| {
                InventoryShard::new(index, ledger)
            }));
            arbiters.push(arbiter);
        }
        Self {
            shards: Arc::new(Shards { addrs, arbiters }),
        }
    }

    pub fn shard_count(&self) -> usize {
        self.shards.addrs.len()
    }

    /// The shard that owns `pharmacy_id` (stable for a given shard count).
    pub fn shard_of(&self, pharmacy_id: Uuid) -> usize {
        let low = pharmacy_id.as_u64_pair().1;
        // The count is small; the cast back to usize cannot truncate.
        (low % self.shards.addrs.len() as u64) as usize
    }

    fn shard(&self, pharmacy_id: Uuid) -> &Addr<InventoryShard> {
        &self.shards.addrs[self.shard_of(pharmacy_id)]
    }

    pub async fn reserve(
        &self,
        id: Uuid,
        pharmacy_id: Uuid,
        lines: Vec<Line>,
    ) -> Result<ReserveOutcome, InventoryError> {
        self.shard(pharmacy_id)
            .send(Reserve {
                id,
                pharmacy_id,
                lines,
            })
            .await
            .map_err(mailbox)?
    }

    pub async fn commit(&self, id: Uuid, pharmacy_id: Uuid) -> Result<Settle, InventoryError> {
        self.shard(pharmacy_id)
            .send(Commit { id, pharmacy_id })
            .await
            .map_err(mailbox)?
    }

    pub async fn release(&self, id: Uuid, pharmacy_id: Uuid) -> Result<Settle, InventoryError> {
        self.shard(pharmacy_id)
            .send(Release {
                id,
                pharmacy_id,
                unplaced: false,
            })
            .await
            .map_err(mailbox)?
    }

    /// Releases a reservation no order was stored under (crash repair); an order stored
    /// meanwhile keeps it ([`Settle::Placed`]).
    pub async fn release_unplaced(
        &self,
        id: Uuid,
        pharmacy_id: Uuid,
    ) -> Result<Settle, InventoryError> {
        self.shard(pharmacy_id)
            .send(Release {
                id,
                pharmacy_id,
                unplaced: true,
            })
            .await
            .map_err(mailbox)?
    }

    pub async fn set_quantities(
        &self,
        pharmacy_id: Uuid,
        lines: Vec<Line>,
    ) -> Result<SetStock, InventoryError> {
        self.shard(pharmacy_id)
            .send(SetQuantities { pharmacy_id, lines })
            .await
            .map_err(mailbox)?
    }

    /// Crashes the shard that owns `pharmacy_id` (see [`InjectFault`]).
    pub async fn inject_fault(&self, pharmacy_id: Uuid) -> Result<(), InventoryError> {
        self.shard(pharmacy_id)
            .send(InjectFault)
            .await
            .map_err(mailbox)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(m: Uuid, qty: i64) -> Line {
        Line {
            medicine_id: m,
            qty,
        }
    }

    #[test]
    fn merge_sums_duplicates_in_id_order() {
        let (a, b) = (Uuid::from_u128(2), Uuid::from_u128(1));
        let merged = merge_lines(&[line(a, 1), line(b, 2), line(a, 3)]);
        assert_eq!(merged, vec![line(b, 2), line(a, 4)]);
    }

    #[test]
    fn book_tracks_reserve_commit_release() {
        let (p, m) = (Uuid::now_v7(), Uuid::now_v7());
        let mut book = StockBook::default();
        book.load(
            p,
            HashMap::from([(
                m,
                StockLevel {
                    quantity: 10,
                    reserved: 0,
                },
            )]),
        );
        assert!(book.shortages(p, &[line(m, 10)]).is_empty());
        book.reserve(p, &[line(m, 7)]);
        let short = book.shortages(p, &[line(m, 4)]);
        assert_eq!(short[0].available, 3);
        book.commit(p, &[line(m, 5)]);
        assert_eq!(
            book.level(p, m),
            StockLevel {
                quantity: 5,
                reserved: 2
            }
        );
        book.release(p, &[line(m, 2)]);
        assert_eq!(
            book.level(p, m),
            StockLevel {
                quantity: 5,
                reserved: 0
            }
        );
        // Unknown medicines have nothing available.
        assert_eq!(
            book.shortages(p, &[line(Uuid::now_v7(), 1)])[0].available,
            0
        );
    }
}
