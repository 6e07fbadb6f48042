//! A PostgreSQL database and a Redis key prefix of one test's or bench's own, and their
//! cleanup. Shared by the cluster tests (`support/cluster.rs`) and the cluster benches
//! (`benches/common`), which include this file by path.
#![allow(dead_code)]

/// A database of its own on the server of `admin_url`, dropped by [`Database::drop_now`].
pub struct Database {
    pub admin_url: String,
    pub name: String,
    pub url: String,
}

impl Database {
    /// Creates `medify_<label>_<uuid>`.
    pub async fn create(admin_url: &str, label: &str) -> Self {
        let name = format!("medify_{label}_{}", uuid::Uuid::now_v7().simple());
        let pool = sqlx::PgPool::connect(admin_url).await.expect("postgres");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&pool)
            .await
            .expect("create database");
        pool.close().await;
        let base = admin_url.rsplit_once('/').map_or(admin_url, |(b, _)| b);
        Self {
            admin_url: admin_url.to_owned(),
            url: format!("{base}/{name}"),
            name,
        }
    }

    pub async fn drop_now(&self) {
        if let Ok(pool) = sqlx::PgPool::connect(&self.admin_url).await {
            let _ = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&pool)
            .await;
        }
    }
}

/// Deletes every key under `prefix`.
pub async fn clear_redis(url: &str, prefix: &str) {
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
    }
}
