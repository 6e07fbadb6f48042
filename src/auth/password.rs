//! Password hashing with argon2id (OWASP's parameters: 19 MiB, 2 passes, 1 lane).
//!
//! Hashing is deliberately slow and memory-hungry, so it never runs on an async worker: it
//! runs on a few dedicated threads (as many as there are HTTP workers, at least two). A
//! burst of logins queues for them instead of stalling sockets. Each thread allocates its
//! 19 MiB of argon2 memory once and reuses it for every hash: allocating it per hash (what
//! `PasswordHasher::hash_password` does) left glibc holding hundreds of MiB of freed,
//! never-reused blocks after a thousand registrations, because the 64-byte-aligned
//! requests do not fit the holes the previous ones left (measured in the closing note of
//! the tracking issue). Unknown accounts are verified against a dummy hash, so "no such
//! user" and "wrong password" take the same time.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::{oneshot, OnceCell};

use crate::domain::Password;

/// OWASP Password Storage Cheat Sheet, argon2id option 2: m = 19 MiB, t = 2, p = 1.
const MEMORY_KIB: u32 = 19 * 1024;
const ITERATIONS: u32 = 2;
const LANES: u32 = 1;

/// Work for a hashing thread, given that thread's argon2 memory.
type Job = Box<dyn FnOnce(&mut [Block]) + Send>;

/// The password hashing service; cheap to clone. Its threads end when the last clone is
/// dropped.
#[derive(Clone)]
pub struct Passwords {
    jobs: mpsc::Sender<Job>,
    dummy: Arc<OnceCell<String>>,
}

fn params() -> Result<Params, argon2::Error> {
    Params::new(MEMORY_KIB, ITERATIONS, LANES, None)
}

/// A PHC-format argon2id hash of `password`, computed in `memory`.
fn hash_with(password: &str, memory: &mut [Block]) -> anyhow::Result<String> {
    let params = params().map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt
        .decode_b64(&mut salt_buf)
        .map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let output = Output::init_with(Params::DEFAULT_OUTPUT_LEN, |out| {
        Ok(argon2.hash_password_into_with_memory(
            password.as_bytes(),
            salt_bytes,
            out,
            &mut *memory,
        )?)
    })
    .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| anyhow::anyhow!("parameters: {e}"))?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(hash.to_string())
}

/// Whether `password` matches the stored PHC `hash`, computed in `memory` (or in memory of
/// its own when the stored parameters ask for more than the thread keeps).
fn verify_with(password: &str, hash: &str, memory: &mut [Block]) -> anyhow::Result<bool> {
    let bad = |e: argon2::password_hash::Error| anyhow::anyhow!("stored hash: {e}");
    let parsed = PasswordHash::new(hash).map_err(bad)?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        anyhow::bail!("stored hash has no salt or no output");
    };
    // The stored hash carries its own parameters, so older hashes keep verifying.
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(bad)?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()
        .map_err(|e| anyhow::anyhow!("stored hash version: {e}"))?
        .unwrap_or_default();
    let params = Params::try_from(&parsed).map_err(bad)?;
    let fits = params.block_count() <= memory.len();
    let argon2 = Argon2::new(algorithm, version, params);
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_buf).map_err(bad)?;
    let computed = Output::init_with(expected.len(), |out| {
        if fits {
            Ok(argon2.hash_password_into_with_memory(
                password.as_bytes(),
                salt_bytes,
                out,
                &mut *memory,
            )?)
        } else {
            Ok(argon2.hash_password_into(password.as_bytes(), salt_bytes, out)?)
        }
    })
    .map_err(|e| anyhow::anyhow!("verification failed: {e}"))?;
    // `Output` compares in constant time.
    Ok(computed == expected)
}

/// One hashing thread: takes jobs until every sender is gone.
fn hashing_thread(jobs: Arc<Mutex<mpsc::Receiver<Job>>>, blocks: usize) {
    let mut memory: Vec<Block> = Vec::new();
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        let Ok(job) = job else { return };
        if memory.len() < blocks {
            // Once, at the first job: a server that never hashes never holds the memory.
            memory = vec![Block::default(); blocks];
        }
        job(&mut memory);
    }
}

impl Passwords {
    /// `threads` hashing threads (at least one): at most that many hashes run at once.
    pub fn new(threads: usize) -> anyhow::Result<Self> {
        let blocks = params()
            .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?
            .block_count();
        let (jobs, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || hashing_thread(rx, blocks))
                .context("starting a password hashing thread")?;
        }
        Ok(Self {
            jobs,
            dummy: Arc::new(OnceCell::new()),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut [Block]) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Box::new(move |memory| {
                let _ = tx.send(work(memory));
            }))
            .map_err(|_| anyhow::anyhow!("password hashing threads stopped"))?;
        rx.await.context("a password hashing thread stopped")?
    }

    /// A PHC-format argon2id hash of `password` with a fresh random salt.
    pub async fn hash(&self, password: &Password) -> anyhow::Result<String> {
        let password = password.expose().to_owned();
        self.run(move |memory| hash_with(&password, memory)).await
    }

    /// Whether `password` matches `hash`. With no hash (unknown account, OTP-only account)
    /// the same work is done against a dummy hash and the answer is `false`.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> anyhow::Result<bool> {
        let (hash, real) = match hash {
            Some(h) => (h.to_owned(), true),
            None => (self.dummy_hash().await?, false),
        };
        let password = password.to_owned();
        let matched = self
            .run(move |memory| verify_with(&password, &hash, memory))
            .await?;
        Ok(matched && real)
    }

    async fn dummy_hash(&self) -> anyhow::Result<String> {
        let this = self.clone();
        self.dummy
            .get_or_try_init(|| async move {
                this.run(|memory| hash_with("medify-dummy-password", memory))
                    .await
            })
            .await
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_differ_by_salt() {
        let passwords = Passwords::new(2).expect("hashing threads");
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

    #[tokio::test]
    async fn hashes_from_the_allocating_path_still_verify() {
        use argon2::password_hash::PasswordHasher;
        // What earlier versions stored, and a cheaper parameter set an operator may have.
        let salt = SaltString::generate(&mut OsRng);
        let standard = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            params().expect("params"),
        )
        .hash_password(b"correct horse battery", &salt)
        .expect("hash")
        .to_string();
        let cheap = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8 * 1024, 1, 1, None).expect("params"),
        )
        .hash_password(b"correct horse battery", &salt)
        .expect("hash")
        .to_string();
        // More memory than a hashing thread keeps: computed in memory of its own.
        let big = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(24 * 1024, 1, 1, None).expect("params"),
        )
        .hash_password(b"correct horse battery", &salt)
        .expect("hash")
        .to_string();
        let passwords = Passwords::new(1).expect("hashing threads");
        for stored in [standard, cheap, big] {
            assert!(passwords
                .verify("correct horse battery", Some(&stored))
                .await
                .expect("verify"));
            assert!(!passwords
                .verify("correct horse batterY", Some(&stored))
                .await
                .expect("verify"));
        }
        assert!(passwords
            .verify("x", Some("$argon2id$not-a-hash"))
            .await
            .is_err());
    }
}
