//! Keeping every node's in-memory catalog in step, when several nodes share Redis.
//!
//! After a catalog write, the node that made it publishes `{kind, id, origin}` on the
//! `<prefix>catalog` channel; every other node reloads that one row from the shared
//! database into its search index or pharmacy directory. Pub/sub is fire-and-forget: a node
//! that was disconnected when a write happened catches up at its next start (it loads the
//! whole catalog then). Without Redis there is one node and nothing to do.

use actix_web::web;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::redis::Redis;
use crate::state::AppState;

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Changed {
    Medicine,
    Pharmacy,
}

#[derive(Debug, Serialize, Deserialize)]
struct Notice {
    kind: Changed,
    id: Uuid,
    /// The application instance that made the change (it does not reload its own).
    origin: Uuid,
}

fn channel(redis: &Redis) -> String {
    redis.key("catalog")
}

/// Tells the other nodes that `id` changed (no-op without Redis).
pub fn announce(state: &AppState, kind: Changed, id: Uuid) {
    let Some(redis) = state.redis.clone() else {
        return;
    };
    let notice = Notice {
        kind,
        id,
        origin: state.instance,
    };
    actix_web::rt::spawn(async move {
        let Ok(payload) = serde_json::to_string(&notice) else {
            return;
        };
        let sent = async {
            let mut conn = redis.connection().await?;
            redis::cmd("PUBLISH")
                .arg(channel(&redis))
                .arg(payload)
                .query_async::<i64>(&mut conn)
                .await
        };
        if let Err(e) = sent.await {
            tracing::warn!(error = %e, "catalog change not announced to other nodes");
        }
    });
}

/// Whether pharmacy `id` exists. A miss in this node's directory is checked against the
/// database, and a row found there is taken in: behind a balancer, the next request after
/// a pharmacy's creation often reaches another node before the notice does.
pub async fn pharmacy_exists(state: &AppState, id: Uuid) -> Result<bool, sqlx::Error> {
    if state.catalog.pharmacies().get(id).is_some() {
        return Ok(true);
    }
    match state.store.pharmacy(id).await? {
        Some(p) => {
            state.catalog.pharmacies_mut().insert(&p);
            Ok(true)
        }
        None => Ok(false),
    }
}

async fn apply(state: &AppState, notice: Notice) -> Result<(), sqlx::Error> {
    match notice.kind {
        Changed::Medicine => match state.store.medicine(notice.id).await? {
            Some(m) => state.catalog.medicines_mut().upsert(m),
            None => state.catalog.medicines_mut().remove(notice.id),
        },
        Changed::Pharmacy => {
            if let Some(p) = state.store.pharmacy(notice.id).await? {
                state.catalog.pharmacies_mut().insert(&p);
            }
        }
    }
    Ok(())
}

/// Listens for other nodes' changes for the life of the process (reconnecting).
pub fn start(state: web::Data<AppState>) {
    let Some(redis) = state.redis.clone() else {
        return;
    };
    actix_web::rt::spawn(async move {
        let mut backoff = std::time::Duration::from_millis(100);
        loop {
            let listened = async {
                let mut pubsub = redis.client().get_async_pubsub().await?;
                pubsub.subscribe(channel(&redis)).await?;
                let mut messages = pubsub.on_message();
                while let Some(msg) = messages.next().await {
                    let Ok(payload) = msg.get_payload::<String>() else {
                        continue;
                    };
                    match serde_json::from_str::<Notice>(&payload) {
                        Ok(n) if n.origin == state.instance => {}
                        Ok(n) => {
                            if let Err(e) = apply(&state, n).await {
                                tracing::warn!(error = %e, "could not reload a changed catalog row");
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "undecodable catalog notice"),
                    }
                }
                Ok::<(), redis::RedisError>(())
            };
            match listened.await {
                Ok(()) => backoff = std::time::Duration::from_millis(100),
                Err(e) => {
                    tracing::warn!(error = %e, "catalog listener: Redis error, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(std::time::Duration::from_secs(10));
                }
            }
        }
    });
}
