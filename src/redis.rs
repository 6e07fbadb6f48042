//! The shared Redis connection, when `REDIS_URL` is set.
//!
//! One multiplexed [`ConnectionManager`] per process, opened on first use and reconnecting
//! by itself, so a Redis that starts after Medify (or restarts under it) is picked up
//! without a restart; `/readyz` reports it unready meanwhile. Every key goes through
//! [`Redis::key`] so deployments and tests sharing one server stay apart.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use crate::config::RedisSettings;

/// A cheap-to-clone handle to the Redis server.
#[derive(Clone)]
pub struct Redis {
    client: redis::Client,
    manager: Arc<OnceCell<ConnectionManager>>,
    prefix: Arc<str>,
}

impl Redis {
    /// Prepares the client; no connection is made until one is needed.
    pub fn new(settings: &RedisSettings) -> redis::RedisResult<Self> {
        Ok(Self {
            client: redis::Client::open(settings.url.as_str())?,
            manager: Arc::new(OnceCell::new()),
            prefix: settings.key_prefix.as_str().into(),
        })
    }

    /// The client, for connections of a special kind (pub/sub).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// The full key for `name` under this deployment's prefix.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The shared connection, opening it on first use.
    pub async fn connection(&self) -> redis::RedisResult<ConnectionManager> {
        let client = self.client.clone();
        self.manager
            .get_or_try_init(|| async move {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    .set_response_timeout(Some(Duration::from_secs(2)));
                ConnectionManager::new_with_config(client, config).await
            })
            .await
            .cloned()
    }

    /// A connection of its own (for blocking reads, which would stall the shared one).
    pub async fn dedicated_connection(&self) -> redis::RedisResult<ConnectionManager> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)));
        ConnectionManager::new_with_config(self.client.clone(), config).await
    }

    /// Round-trips a PING.
    pub async fn ping(&self) -> redis::RedisResult<()> {
        let mut conn = self.connection().await?;
        let pong: String = redis::cmd("PING").query_async(&mut conn).await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "unexpected PING answer",
            )))
        }
    }
}
