//! Ports: what the dispatch core needs from the outside world, as traits the server
//! implements (over SQLite or PostgreSQL, Redis, the clock).
//!
//! Futures are boxed so the traits can be used as `Arc<dyn …>` by actors.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use uuid::Uuid;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A storage failure; the message is for logs, not for clients.
#[derive(Debug, Clone, thiserror::Error)]
#[error("ledger: {0}")]
pub struct LedgerError(pub String);

/// One medicine's stock at one pharmacy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StockLevel {
    /// On the shelf.
    pub quantity: i64,
    /// Held by open reservations.
    pub reserved: i64,
}

impl StockLevel {
    /// What can still be sold.
    pub fn available(self) -> i64 {
        self.quantity - self.reserved
    }
}

/// One line of a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line {
    pub medicine_id: Uuid,
    pub qty: i64,
}

/// A line that cannot be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shortage {
    pub medicine_id: Uuid,
    pub requested: i64,
    pub available: i64,
}

/// What the ledger did with a reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerReserve {
    /// Written: stock rows, reservation row and lines, in one transaction.
    Reserved,
    /// A reservation with this id already exists (a retry): nothing was written.
    AlreadyExists,
    /// At least one line is short: nothing was written.
    Insufficient(Vec<Shortage>),
}

/// What the ledger did when asked to commit or release a reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle {
    /// Done now; these were the reservation's lines at this pharmacy.
    Done { pharmacy_id: Uuid, lines: Vec<Line> },
    /// It had already been committed or released.
    AlreadySettled,
    /// No such reservation.
    Unknown,
}

/// What the ledger did with new shelf quantities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetStock {
    Done,
    /// These lines would fall below what is reserved: nothing was written.
    BelowReserved(Vec<Shortage>),
}

/// Durable stock: every change is one transaction that keeps 0 <= reserved <= quantity.
pub trait StockLedger: Send + Sync + 'static {
    /// Every stock row of a pharmacy.
    fn load_pharmacy(
        &self,
        pharmacy_id: Uuid,
    ) -> BoxFuture<'_, Result<HashMap<Uuid, StockLevel>, LedgerError>>;

    /// Records reservation `id` and raises `reserved` for each line, all or nothing.
    fn reserve(
        &self,
        id: Uuid,
        pharmacy_id: Uuid,
        lines: Vec<Line>,
    ) -> BoxFuture<'_, Result<LedgerReserve, LedgerError>>;

    /// Pick-up: lowers `quantity` and `reserved` by the reservation's lines, once.
    fn commit(&self, id: Uuid) -> BoxFuture<'_, Result<Settle, LedgerError>>;

    /// Cancel or failure: lowers `reserved` by the reservation's lines, once.
    fn release(&self, id: Uuid) -> BoxFuture<'_, Result<Settle, LedgerError>>;

    /// Sets shelf quantities (creating rows as needed), all or nothing.
    fn set_stock(
        &self,
        pharmacy_id: Uuid,
        lines: Vec<Line>,
    ) -> BoxFuture<'_, Result<SetStock, LedgerError>>;
}
