//! Rate limits for the auth endpoints, per client network and per account or phone.
//!
//! Account limits are counted per (account, client network) ([`account_key`]): failures
//! from an attacker's network exhaust the attacker's budget for that account, never the
//! owner's, who signs in from another network. The client network is an IPv4 address or an
//! IPv6 /64 (see `auth::client`), so one host cannot multiply its budget by rotating
//! through its own IPv6 addresses.
//!
//! One algorithm, GCRA (the generic cell rate algorithm, a leaky bucket kept as a single
//! "theoretical arrival time" per key), in two places: [`gcra`] here for the in-memory
//! limiter, and the same arithmetic in a Lua script run atomically by Redis when
//! `REDIS_URL` is set, so every node enforces one shared limit. A limit of N per minute
//! allows a burst of N, then one request every 60/N seconds.
//!
//! If Redis does not answer, the in-memory limiter takes over (logged), so a Redis outage
//! weakens limits to per-node rather than disabling them or failing logins.
//!
//! The `governor` crate does GCRA in memory well, but its state cannot be shared through
//! Redis; keeping our own ~20 lines means both backends share one definition and one test.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::redis::Redis;

/// A limit: `per_minute` requests a minute, with a burst of as many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub per_minute: u32,
}

impl Quota {
    /// The spacing of requests at the sustained rate; 0 for more than 60 000 a minute.
    fn interval_ms(self) -> i64 {
        60_000 / i64::from(self.per_minute.max(1))
    }
    /// How far ahead of now a key's arrival time may run: one minute, so the burst is
    /// `per_minute`. (Not `interval × per_minute`: with a generous limit the interval
    /// rounds to 0 and the window would vanish, refusing any request whose clock reading
    /// came a millisecond before the last one's.)
    fn window_ms(self) -> i64 {
        60_000
    }
}

/// The outcome of one GCRA step: the key's new theoretical arrival time, or how long to
/// wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow { tat_ms: i64 },
    Deny { retry_after_ms: i64 },
}

/// One GCRA step at `now_ms` for a key whose stored arrival time is `tat_ms`.
pub fn gcra(now_ms: i64, tat_ms: Option<i64>, quota: Quota) -> Decision {
    let tat = tat_ms.unwrap_or(now_ms).max(now_ms);
    let new_tat = tat + quota.interval_ms();
    let ahead = new_tat - now_ms;
    if ahead > quota.window_ms() {
        Decision::Deny {
            retry_after_ms: ahead - quota.window_ms(),
        }
    } else {
        Decision::Allow { tat_ms: new_tat }
    }
}

/// The same step as [`gcra`], run inside Redis with Redis's clock. Returns 0 when allowed,
/// else the milliseconds to wait.
const GCRA_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + interval
if new_tat - now > window then
  return new_tat - now - window
end
redis.call('SET', KEYS[1], new_tat, 'PX', window + interval)
return 0
";

/// The key of a per-client limit: `action` (`login`, `otp`, …) from one client network.
pub fn client_key(action: &str, network: &str) -> String {
    format!("{action}:ip:{network}")
}

/// The key of a per-account limit: `action` on one account (a normalised email or an
/// E.164 phone) from one client network.
pub fn account_key(action: &str, account: &str, network: &str) -> String {
    format!("{action}:account:{account}:net:{network}")
}

/// Limits keyed by strings such as `login:ip:127.0.0.1` (see [`client_key`] and
/// [`account_key`]).
#[derive(Clone)]
pub struct RateLimiter {
    memory: Arc<Mutex<HashMap<String, i64>>>,
    redis: Option<(Redis, Arc<redis::Script>)>,
}

/// Keys kept in memory before expired ones are swept.
const SWEEP_AT: usize = 10_000;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl RateLimiter {
    pub fn new(redis: Option<Redis>) -> Self {
        Self {
            memory: Arc::new(Mutex::new(HashMap::new())),
            redis: redis.map(|r| (r, Arc::new(redis::Script::new(GCRA_LUA)))),
        }
    }

    /// Counts one request against `key`; `Err(seconds)` when over the quota.
    pub async fn check(&self, key: &str, quota: Quota) -> Result<(), u64> {
        let decision = match &self.redis {
            Some((redis, script)) => match Self::check_redis(redis, script, key, quota).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, "rate limit: Redis unavailable, limiting per node");
                    self.check_memory(key, quota)
                }
            },
            None => self.check_memory(key, quota),
        };
        match decision {
            Decision::Allow { .. } => Ok(()),
            Decision::Deny { retry_after_ms } => {
                let secs = (retry_after_ms + 999) / 1000;
                Err(u64::try_from(secs.max(1)).unwrap_or(1))
            }
        }
    }

    fn check_memory(&self, key: &str, quota: Quota) -> Decision {
        let mut map = self
            .memory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Read under the lock, so the steps on one key see the clock in order.
        let now = now_ms();
        if map.len() >= SWEEP_AT {
            map.retain(|_, tat| *tat > now);
        }
        let decision = gcra(now, map.get(key).copied(), quota);
        if let Decision::Allow { tat_ms } = decision {
            map.insert(key.to_owned(), tat_ms);
        }
        decision
    }

    async fn check_redis(
        redis: &Redis,
        script: &redis::Script,
        key: &str,
        quota: Quota,
    ) -> redis::RedisResult<Decision> {
        let mut conn = redis.connection().await?;
        let wait: i64 = script
            .key(redis.key(&format!("ratelimit:{key}")))
            .arg(quota.interval_ms())
            .arg(quota.window_ms())
            .invoke_async(&mut conn)
            .await?;
        Ok(if wait > 0 {
            Decision::Deny {
                retry_after_ms: wait,
            }
        } else {
            Decision::Allow { tat_ms: 0 }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_the_quota_then_one_per_interval() {
        let quota = Quota { per_minute: 10 };
        let mut tat = None;
        for i in 0..10 {
            match gcra(0, tat, quota) {
                Decision::Allow { tat_ms } => tat = Some(tat_ms),
                Decision::Deny { .. } => panic!("request {i} of the burst denied"),
            }
        }
        assert_eq!(
            gcra(0, tat, quota),
            Decision::Deny {
                retry_after_ms: 6_000
            }
        );
        // One interval later, exactly one more is allowed.
        assert!(matches!(gcra(6_000, tat, quota), Decision::Allow { .. }));
    }

    #[test]
    fn a_generous_limit_tolerates_clocks_read_out_of_order() {
        // 1 000 000 a minute: the interval rounds to 0 ms. A request whose clock reading is
        // a millisecond older than the last one's is still allowed (it used to be refused:
        // the window had rounded to 0 too).
        let quota = Quota {
            per_minute: 1_000_000,
        };
        let Decision::Allow { tat_ms } = gcra(1_000, None, quota) else {
            panic!("first request denied");
        };
        assert!(matches!(
            gcra(999, Some(tat_ms), quota),
            Decision::Allow { .. }
        ));
        // A limit that does not divide a minute still allows exactly its burst.
        let quota = Quota { per_minute: 7 };
        let mut tat = None;
        for _ in 0..7 {
            match gcra(0, tat, quota) {
                Decision::Allow { tat_ms } => tat = Some(tat_ms),
                Decision::Deny { .. } => panic!("burst denied"),
            }
        }
        assert!(matches!(gcra(0, tat, quota), Decision::Deny { .. }));
    }

    #[test]
    fn idle_keys_recover_the_full_burst() {
        let quota = Quota { per_minute: 3 };
        let tat = Some(60_000);
        assert!(matches!(
            gcra(60_000, tat, quota),
            Decision::Allow { tat_ms: 80_000 }
        ));
    }

    #[tokio::test]
    async fn an_accounts_budget_is_per_client_network() {
        let limiter = RateLimiter::new(None);
        let quota = Quota { per_minute: 3 };
        let attacker = account_key("login", "owner@example.com", "203.0.113.7");
        let owner = account_key("login", "owner@example.com", "2001:db8:1:2::/64");
        for _ in 0..3 {
            assert!(limiter.check(&attacker, quota).await.is_ok());
        }
        assert!(limiter.check(&attacker, quota).await.is_err());
        assert!(limiter.check(&owner, quota).await.is_ok());
        assert_ne!(client_key("login", "203.0.113.7"), attacker);
    }

    #[tokio::test]
    async fn memory_limiter_denies_past_the_quota() {
        let limiter = RateLimiter::new(None);
        let quota = Quota { per_minute: 5 };
        for _ in 0..5 {
            assert!(limiter.check("k", quota).await.is_ok());
        }
        let retry = limiter.check("k", quota).await.expect_err("denied");
        assert!((1..=12).contains(&retry), "{retry}");
        assert!(limiter.check("other", quota).await.is_ok());
    }
}
