//! The operator's dispatch controls that outlive a node (migration 0011): whether automatic
//! offers are held. The matcher keeps the working copy; this row is what a restarted node,
//! or the node that takes dispatch over in a cluster, starts from.

use super::Store;
use crate::on_pool;

impl Store {
    /// Whether the operator holds automatic offers.
    pub async fn dispatch_paused(&self) -> Result<bool, sqlx::Error> {
        on_pool!(self, |pool| {
            sqlx::query_scalar("SELECT paused FROM dispatch_control WHERE id = 1")
                .fetch_optional(pool)
                .await
                .map(|paused: Option<bool>| paused.unwrap_or(false))
        })
    }

    /// Records the operator's hold (`true`) or resume (`false`) of automatic offers.
    pub async fn set_dispatch_paused(&self, paused: bool) -> Result<(), sqlx::Error> {
        on_pool!(self, |pool| {
            sqlx::query("UPDATE dispatch_control SET paused = $1 WHERE id = 1")
                .bind(paused)
                .execute(pool)
                .await
                .map(|_| ())
        })
    }
}
