//! Password hashing with argon2id (OWASP's parameters: 19 MiB, 2 passes, 1 lane).
//!
//! Hashing is deliberately slow and memory-hungry, so it never runs on an async worker:
//! each hash or verify takes a semaphore permit (as many as there are CPUs) and runs on the
//! blocking pool. A burst of logins then queues for the CPUs instead of stalling sockets
//! or allocating 19 MiB per concurrent request. Unknown accounts are verified against a
//! dummy hash, so "no such user" and "wrong password" take the same time.

use std::sync::Arc;

use anyhow::Context;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::{OnceCell, Semaphore};

use crate::domain::Password;

/// OWASP Password Storage Cheat Sheet, argon2id option 2: m = 19 MiB, t = 2, p = 1.
const MEMORY_KIB: u32 = 19 * 1024;
const ITERATIONS: u32 = 2;
const LANES: u32 = 1;

/// The password hashing service; cheap to clone.
#[derive(Clone)]
pub struct Passwords {
    permits: Arc<Semaphore>,
    dummy: Arc<OnceCell<String>>,
}

fn argon2() -> Result<Argon2<'static>, argon2::Error> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, LANES, None)?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn hash_blocking(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    let hash = argon2()
        .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))?;
    Ok(hash.to_string())
}

fn verify_blocking(password: &str, hash: &str) -> anyhow::Result<bool> {
    let parsed = PasswordHash::new(hash).map_err(|e| anyhow::anyhow!("stored hash: {e}"))?;
    // The stored hash carries its own parameters, so older hashes keep verifying.
    match Argon2::default().verify_password(password.as_bytes(), &parsed) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::Password) => Ok(false),
        Err(e) => Err(anyhow::anyhow!("verification failed: {e}")),
    }
}

impl Passwords {
    /// At most `concurrency` hashes run at once.
    pub fn new(concurrency: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            dummy: Arc::new(OnceCell::new()),
        }
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let _permit = self.permits.acquire().await.context("hasher closed")?;
        tokio::task::spawn_blocking(work)
            .await
            .context("hashing task failed")?
    }

    /// A PHC-format argon2id hash of `password` with a fresh random salt.
    pub async fn hash(&self, password: &Password) -> anyhow::Result<String> {
        let password = password.expose().to_owned();
        self.run(move || hash_blocking(&password)).await
    }

    /// Whether `password` matches `hash`. With no hash (unknown account, OTP-only account)
    /// the same work is done against a dummy hash and the answer is `false`.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> anyhow::Result<bool> {
        let (hash, real) = match hash {
            Some(h) => (h.to_owned(), true),
            None => (self.dummy_hash().await?, false),
        };
        let password = password.to_owned();
        let matched = self.run(move || verify_blocking(&password, &hash)).await?;
        Ok(matched && real)
    }

    async fn dummy_hash(&self) -> anyhow::Result<String> {
        let this = self.clone();
        self.dummy
            .get_or_try_init(
                || async move { this.run(|| hash_blocking("medify-dummy-password")).await },
            )
            .await
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_differ_by_salt() {
        let passwords = Passwords::new(2);
        let pw = Password::parse("correct horse battery".into()).expect("valid");
        let a = passwords.hash(&pw).await.expect("hash");
        let b = passwords.hash(&pw).await.expect("hash");
        assert_ne!(a, b, "salts must differ");
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert!(passwords
            .verify("correct horse battery", Some(&a))
            .await
            .expect("verify"));
        assert!(!passwords
            .verify("wrong horse battery", Some(&a))
            .await
            .expect("verify"));
        assert!(!passwords
            .verify("correct horse battery", None)
            .await
            .expect("verify"));
    }
}
