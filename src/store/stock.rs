//! The stock ledger: `medify_actors::ports::StockLedger` over SQLite or PostgreSQL.
//!
//! Each method is one transaction. Every row change is a conditional update (`… WHERE
//! quantity - reserved >= qty`, `… WHERE status = 'held'`), so the database itself refuses
//! an oversell or a double settle even if a caller's picture of the stock is stale; the
//! schema's CHECK constraints stand behind that as a last line.

use std::collections::HashMap;

use medify_actors::ports::{
    BoxFuture, LedgerError, LedgerReserve, Line, SetStock, Settle, Shortage, StockLedger,
    StockLevel,
};
use uuid::Uuid;

use super::{now, Store};
use crate::on_pool;

fn ledger(e: sqlx::Error) -> LedgerError {
    LedgerError(e.to_string())
}

/// Locks a reservation's row while it is still held (`$1` the id, `$2` the time); no row
/// when it was settled. The order insert and the repair's release of an orderless
/// reservation both start with it, so whichever comes second sees the other's work.
pub(crate) const LOCK_HELD_RESERVATION: &str =
    "UPDATE stock_reservations SET updated_at = $2 WHERE id = $1 AND status = 'held'";

impl Store {
    async fn stock_levels(
        &self,
        pharmacy_id: Uuid,
    ) -> Result<HashMap<Uuid, StockLevel>, sqlx::Error> {
        let rows: Vec<(Uuid, i64, i64)> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT medicine_id, quantity, reserved FROM pharmacy_stock WHERE pharmacy_id = $1",
            )
            .bind(pharmacy_id)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(m, quantity, reserved)| (m, StockLevel { quantity, reserved }))
            .collect())
    }

    async fn shortages(
        &self,
        pharmacy_id: Uuid,
        lines: &[Line],
    ) -> Result<Vec<Shortage>, sqlx::Error> {
        let levels = self.stock_levels(pharmacy_id).await?;
        Ok(lines
            .iter()
            .filter_map(|l| {
                let available = levels.get(&l.medicine_id).map_or(0, |s| s.available());
                (available < l.qty).then_some(Shortage {
                    medicine_id: l.medicine_id,
                    requested: l.qty,
                    available: available.max(0),
                })
            })
            .collect())
    }

    async fn reserve_stock(
        &self,
        id: Uuid,
        pharmacy_id: Uuid,
        lines: &[Line],
    ) -> Result<LedgerReserve, sqlx::Error> {
        let at = now();
        let short = on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let inserted = sqlx::query(
                "INSERT INTO stock_reservations (id, pharmacy_id, status, created_at, updated_at) \
                 VALUES ($1, $2, 'held', $3, $3) ON CONFLICT (id) DO NOTHING",
            )
            .bind(id)
            .bind(pharmacy_id)
            .bind(at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                return Ok(LedgerReserve::AlreadyExists);
            }
            let mut short = false;
            for line in lines {
                let updated = sqlx::query(
                    "UPDATE pharmacy_stock SET reserved = reserved + $3, updated_at = $4 \
                     WHERE pharmacy_id = $1 AND medicine_id = $2 AND quantity - reserved >= $3",
                )
                .bind(pharmacy_id)
                .bind(line.medicine_id)
                .bind(line.qty)
                .bind(at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if updated == 0 {
                    short = true;
                    break;
                }
                sqlx::query(
                    "INSERT INTO stock_reservation_items (reservation_id, medicine_id, qty) \
                     VALUES ($1, $2, $3)",
                )
                .bind(id)
                .bind(line.medicine_id)
                .bind(line.qty)
                .execute(&mut *tx)
                .await?;
            }
            if short {
                tx.rollback().await?;
            } else {
                tx.commit().await?;
            }
            short
        });
        if short {
            Ok(LedgerReserve::Insufficient(
                self.shortages(pharmacy_id, lines).await?,
            ))
        } else {
            Ok(LedgerReserve::Reserved)
        }
    }

    /// Moves a held reservation to `status`; `commit` also takes the units off the shelf.
    /// `unplaced`: only if no order is stored under `id` (else [`Settle::Placed`]).
    pub(crate) async fn settle_reservation(
        &self,
        id: Uuid,
        commit: bool,
        unplaced: bool,
    ) -> Result<Settle, sqlx::Error> {
        let at = now();
        let status = if commit { "committed" } else { "released" };
        let stock_sql = if commit {
            "UPDATE pharmacy_stock SET quantity = quantity - $3, reserved = reserved - $3, \
             updated_at = $4 WHERE pharmacy_id = $1 AND medicine_id = $2"
        } else {
            "UPDATE pharmacy_stock SET reserved = reserved - $3, updated_at = $4 \
             WHERE pharmacy_id = $1 AND medicine_id = $2"
        };
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            if unplaced {
                // The reservation row is locked first (a row lock on PostgreSQL, the write
                // lock on SQLite), as the order insert locks it; the order is looked for in
                // a statement of its own, which under READ COMMITTED sees an order
                // committed while this waited for the lock.
                sqlx::query(LOCK_HELD_RESERVATION)
                    .bind(id)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                let placed: Option<Uuid> =
                    sqlx::query_scalar("SELECT id FROM orders WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await?;
                if placed.is_some() {
                    tx.rollback().await?;
                    return Ok(Settle::Placed);
                }
            }
            let pharmacy: Option<Uuid> = sqlx::query_scalar(
                "UPDATE stock_reservations SET status = $2, updated_at = $3 \
                 WHERE id = $1 AND status = 'held' RETURNING pharmacy_id",
            )
            .bind(id)
            .bind(status)
            .bind(at)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(pharmacy_id) = pharmacy else {
                let exists: Option<Uuid> =
                    sqlx::query_scalar("SELECT id FROM stock_reservations WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await?;
                tx.rollback().await?;
                return Ok(if exists.is_some() {
                    Settle::AlreadySettled
                } else {
                    Settle::Unknown
                });
            };
            let rows: Vec<(Uuid, i64)> = sqlx::query_as(
                "SELECT medicine_id, qty FROM stock_reservation_items \
                 WHERE reservation_id = $1 ORDER BY medicine_id",
            )
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
            for (medicine_id, qty) in &rows {
                sqlx::query(stock_sql)
                    .bind(pharmacy_id)
                    .bind(medicine_id)
                    .bind(qty)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(Settle::Done {
                pharmacy_id,
                lines: rows
                    .into_iter()
                    .map(|(medicine_id, qty)| Line { medicine_id, qty })
                    .collect(),
            })
        })
    }

    async fn set_stock_rows(
        &self,
        pharmacy_id: Uuid,
        lines: &[Line],
    ) -> Result<SetStock, sqlx::Error> {
        let at = now();
        let refused = on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let mut refused = false;
            for line in lines {
                let n = sqlx::query(
                    "INSERT INTO pharmacy_stock (pharmacy_id, medicine_id, quantity, reserved, updated_at) \
                     VALUES ($1, $2, $3, 0, $4) \
                     ON CONFLICT (pharmacy_id, medicine_id) DO UPDATE \
                       SET quantity = excluded.quantity, updated_at = excluded.updated_at \
                     WHERE pharmacy_stock.reserved <= excluded.quantity",
                )
                .bind(pharmacy_id)
                .bind(line.medicine_id)
                .bind(line.qty)
                .bind(at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if n == 0 {
                    refused = true;
                    break;
                }
            }
            if refused {
                tx.rollback().await?;
            } else {
                tx.commit().await?;
            }
            refused
        });
        if !refused {
            return Ok(SetStock::Done);
        }
        let levels = self.stock_levels(pharmacy_id).await?;
        Ok(SetStock::BelowReserved(
            lines
                .iter()
                .filter_map(|l| {
                    let reserved = levels.get(&l.medicine_id).map_or(0, |s| s.reserved);
                    (reserved > l.qty).then_some(Shortage {
                        medicine_id: l.medicine_id,
                        requested: l.qty,
                        available: reserved,
                    })
                })
                .collect(),
        ))
    }
}

impl StockLedger for Store {
    fn load_pharmacy(
        &self,
        pharmacy_id: Uuid,
    ) -> BoxFuture<'_, Result<HashMap<Uuid, StockLevel>, LedgerError>> {
        Box::pin(async move { self.stock_levels(pharmacy_id).await.map_err(ledger) })
    }

    fn reserve(
        &self,
        id: Uuid,
        pharmacy_id: Uuid,
        lines: Vec<Line>,
    ) -> BoxFuture<'_, Result<LedgerReserve, LedgerError>> {
        Box::pin(async move {
            self.reserve_stock(id, pharmacy_id, &lines)
                .await
                .map_err(ledger)
        })
    }

    fn commit(&self, id: Uuid) -> BoxFuture<'_, Result<Settle, LedgerError>> {
        Box::pin(async move {
            self.settle_reservation(id, true, false)
                .await
                .map_err(ledger)
        })
    }

    fn release(&self, id: Uuid) -> BoxFuture<'_, Result<Settle, LedgerError>> {
        Box::pin(async move {
            self.settle_reservation(id, false, false)
                .await
                .map_err(ledger)
        })
    }

    fn release_unplaced(&self, id: Uuid) -> BoxFuture<'_, Result<Settle, LedgerError>> {
        Box::pin(async move {
            self.settle_reservation(id, false, true)
                .await
                .map_err(ledger)
        })
    }

    fn set_stock(
        &self,
        pharmacy_id: Uuid,
        lines: Vec<Line>,
    ) -> BoxFuture<'_, Result<SetStock, LedgerError>> {
        Box::pin(async move {
            self.set_stock_rows(pharmacy_id, &lines)
                .await
                .map_err(ledger)
        })
    }
}
