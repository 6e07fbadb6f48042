//! The backing services of a cluster run: a fresh PostgreSQL database (created and dropped
//! with `psql`, so the sim links no PostgreSQL driver) and a Redis key prefix of its own
//! (its keys deleted afterwards with one Lua script sent over a plain RESP connection, so
//! the sim links no Redis client either).

use std::process::{Command, Stdio};
use std::time::Duration;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};

use anyhow::{anyhow, bail, Context};

/// A database of the run's own on the PostgreSQL server of `admin_url`.
pub struct Database {
    admin_url: String,
    pub name: String,
    /// The URL the nodes connect with (the admin URL with the new database's name).
    pub url: String,
    dropped: bool,
}

/// Runs one SQL statement with `psql` against `admin_url`.
fn psql(admin_url: &str, sql: &str) -> anyhow::Result<()> {
    let out = Command::new("psql")
        .args([admin_url, "-v", "ON_ERROR_STOP=1", "-q", "-X", "-c", sql])
        .stdin(Stdio::null())
        .output()
        .context("could not run psql (the cluster mode creates its database with it)")?;
    if !out.status.success() {
        bail!(
            "psql {sql:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// `admin_url` with its database replaced by `name` (query string kept).
pub fn database_url(admin_url: &str, name: &str) -> anyhow::Result<String> {
    let (head, query) = match admin_url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (admin_url, None),
    };
    let after_scheme = head
        .split_once("://")
        .map(|(_, rest)| rest)
        .ok_or_else(|| anyhow!("--pg-url must be postgres://…, got {admin_url:?}"))?;
    let base = match after_scheme.find('/') {
        Some(i) => &head[..head.len() - after_scheme.len() + i],
        None => head,
    };
    Ok(match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    })
}

impl Database {
    /// Creates `medify_sim_<uuid>`.
    pub fn create(admin_url: &str) -> anyhow::Result<Self> {
        let name = format!("medify_sim_{}", uuid::Uuid::now_v7().simple());
        let url = database_url(admin_url, &name)?;
        psql(admin_url, &format!("CREATE DATABASE {name}"))?;
        Ok(Self {
            admin_url: admin_url.to_owned(),
            name,
            url,
            dropped: false,
        })
    }

    /// Drops the database, whoever is still connected.
    pub fn drop_now(&mut self) -> anyhow::Result<()> {
        if self.dropped {
            return Ok(());
        }
        self.dropped = true;
        psql(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        )
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Err(e) = self.drop_now() {
            eprintln!(
                "medify-sim: could not drop the database {}: {e:#}",
                self.name
            );
        }
    }
}

/// Where a `redis://[user:password@]host[:port][/db]` URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisAddr {
    pub host_port: String,
    pub password: Option<String>,
    pub db: Option<u32>,
}

impl RedisAddr {
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let rest = url
            .strip_prefix("redis://")
            .ok_or_else(|| anyhow!("--redis-url must be redis://host:port, got {url:?}"))?;
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((a, r)) => (Some(a), r),
            None => (None, rest),
        };
        let (host, db) = match rest.split_once('/') {
            Some((h, d)) if !d.is_empty() => (
                h,
                Some(
                    d.parse::<u32>()
                        .map_err(|_| anyhow!("bad database number in {url:?}"))?,
                ),
            ),
            Some((h, _)) => (h, None),
            None => (rest, None),
        };
        if host.is_empty() {
            bail!("no host in {url:?}");
        }
        let host_port = if host.contains(':') {
            host.to_owned()
        } else {
            format!("{host}:6379")
        };
        let password = auth
            .map(|a| a.split_once(':').map_or(a, |(_, p)| p).to_owned())
            .filter(|p| !p.is_empty());
        Ok(Self {
            host_port,
            password,
            db,
        })
    }
}

/// One command as a RESP array of bulk strings.
fn resp_command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Sends one command and reads a simple answer (`+`, `:` or `-`; a bulk or an array
/// answer is not expected by the commands used here).
fn call(conn: &mut BufReader<TcpStream>, args: &[&str]) -> anyhow::Result<String> {
    conn.get_mut().write_all(&resp_command(args))?;
    let mut line = String::new();
    if conn.read_line(&mut line)? == 0 {
        bail!("Redis closed the connection");
    }
    let line = line.trim_end();
    match line.as_bytes().first() {
        Some(b'+') | Some(b':') => Ok(line[1..].to_owned()),
        Some(b'-') => bail!("Redis: {}", &line[1..]),
        _ => bail!("unexpected Redis answer {line:?}"),
    }
}

/// Deletes every key of `prefix` (SCAN + UNLINK inside one script); how many went.
const DELETE_PREFIX: &str = "local c = '0' local n = 0 \
    repeat local r = redis.call('SCAN', c, 'MATCH', ARGV[1], 'COUNT', 1000) c = r[1] \
    for _, k in ipairs(r[2]) do redis.call('UNLINK', k) n = n + 1 end \
    until c == '0' return n";

/// Counts the keys of a pattern (SCAN inside one script).
const COUNT_PATTERN: &str = "local c = '0' local n = 0 \
    repeat local r = redis.call('SCAN', c, 'MATCH', ARGV[1], 'COUNT', 1000) c = r[1] \
    n = n + #r[2] until c == '0' return n";

/// Answers PING: Redis is there. (Blocking, a few milliseconds: also used on drop.)
pub fn redis_ping(url: &str) -> anyhow::Result<()> {
    let mut conn = redis_connect(url)?;
    call(&mut conn, &["PING"]).map(|_| ())
}

fn redis_connect(url: &str) -> anyhow::Result<BufReader<TcpStream>> {
    let addr = RedisAddr::parse(url)?;
    let to = addr
        .host_port
        .to_socket_addrs()
        .with_context(|| format!("could not resolve {}", addr.host_port))?
        .next()
        .ok_or_else(|| anyhow!("{} resolves to nothing", addr.host_port))?;
    let stream = TcpStream::connect_timeout(&to, Duration::from_secs(5))
        .with_context(|| format!("could not connect to Redis at {}", addr.host_port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut conn = BufReader::new(stream);
    if let Some(p) = &addr.password {
        call(&mut conn, &["AUTH", p])?;
    }
    if let Some(db) = addr.db {
        call(&mut conn, &["SELECT", &db.to_string()])?;
    }
    Ok(conn)
}

/// Deletes every key under `prefix` (which must not be empty); the number deleted.
pub fn redis_clear(url: &str, prefix: &str) -> anyhow::Result<u64> {
    if prefix.is_empty() {
        bail!("refusing to clear an empty Redis prefix");
    }
    let mut conn = redis_connect(url)?;
    let n = call(
        &mut conn,
        &["EVAL", DELETE_PREFIX, "0", &prefix_pattern(prefix)],
    )?;
    Ok(n.parse().unwrap_or(0))
}

/// How many keys there are under `prefix`.
pub fn redis_key_count(url: &str, prefix: &str) -> anyhow::Result<u64> {
    let mut conn = redis_connect(url)?;
    let n = call(
        &mut conn,
        &["EVAL", COUNT_PATTERN, "0", &prefix_pattern(prefix)],
    )?;
    n.parse()
        .map_err(|_| anyhow!("Redis answered {n:?} for a count"))
}

/// A SCAN pattern matching the keys that start with `prefix`, literally (glob
/// characters escaped).
fn prefix_pattern(prefix: &str) -> String {
    let mut pattern = String::new();
    for ch in prefix.chars() {
        if matches!(ch, '*' | '?' | '[' | ']' | '\\') {
            pattern.push('\\');
        }
        pattern.push(ch);
    }
    pattern.push('*');
    pattern
}

/// Whether a database of that name exists on the server of `admin_url` (with `psql`).
pub fn database_exists(admin_url: &str, name: &str) -> anyhow::Result<bool> {
    let out = Command::new("psql")
        .args([
            admin_url,
            "-X",
            "-At",
            "-c",
            &format!(
                "SELECT count(*) FROM pg_database WHERE datname = '{}'",
                name.replace('\'', "''")
            ),
        ])
        .stdin(Stdio::null())
        .output()
        .context("could not run psql")?;
    if !out.status.success() {
        bail!(
            "psql failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim() != "0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_swap_the_database_name() {
        assert_eq!(
            database_url("postgres://postgres@127.0.0.1:5432/postgres", "x").unwrap(),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            database_url("postgres://u:p@db/postgres?sslmode=disable", "x").unwrap(),
            "postgres://u:p@db/x?sslmode=disable"
        );
        assert_eq!(
            database_url("postgresql://h:5432", "x").unwrap(),
            "postgresql://h:5432/x"
        );
        assert!(database_url("nope", "x").is_err());
    }

    #[test]
    fn redis_urls_parse() {
        assert_eq!(
            RedisAddr::parse("redis://127.0.0.1:6379").unwrap(),
            RedisAddr {
                host_port: "127.0.0.1:6379".into(),
                password: None,
                db: None
            }
        );
        assert_eq!(
            RedisAddr::parse("redis://:secret@cache/2").unwrap(),
            RedisAddr {
                host_port: "cache:6379".into(),
                password: Some("secret".into()),
                db: Some(2)
            }
        );
        assert!(RedisAddr::parse("http://x").is_err());
        assert!(RedisAddr::parse("redis://h/x").is_err());
    }

    #[test]
    fn prefixes_match_literally() {
        assert_eq!(prefix_pattern("medify-sim:ab:"), "medify-sim:ab:*");
        assert_eq!(prefix_pattern("a*b?[c]"), "a\\*b\\?\\[c\\]*");
    }

    #[test]
    fn resp_commands_are_arrays_of_bulk_strings() {
        assert_eq!(
            resp_command(&["DEL", "ab"]),
            b"*2\r\n$3\r\nDEL\r\n$2\r\nab\r\n".to_vec()
        );
    }
}
