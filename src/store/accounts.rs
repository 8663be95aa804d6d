//! state.db tables of the intranet site: accounts (`users`), signed-in
//! sessions (`sessions`) and the audit trail (`audit`), plus the read-only
//! figures the health page and `/metrics` show.
//!
//! Kept apart from the catalog: nothing of the pipeline reads these tables.
//! Passwords arrive here already hashed and session tokens as their SHA-256,
//! so a copy of state.db gives neither a password nor a live session.

use super::{Store, StoreError};
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    name       TEXT PRIMARY KEY,
    role       TEXT NOT NULL,
    office     TEXT,
    hash       TEXT NOT NULL,
    disabled   INTEGER NOT NULL DEFAULT 0,
    failures   INTEGER NOT NULL DEFAULT 0,
    locked     INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    user       TEXT NOT NULL,
    csrf       TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id      INTEGER PRIMARY KEY,
    at      TEXT NOT NULL,
    user    TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    outcome TEXT NOT NULL
);
";

pub(super) fn init(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)
}

/// An account as stored.
#[derive(Debug, Clone)]
pub struct UserRow {
    /// Sign-in name.
    pub name: String,
    /// office, leadership, inspector or admin.
    pub role: String,
    /// The office id of an office account.
    pub office: Option<String>,
    /// The argon2 PHC string.
    pub hash: String,
    /// Disabled accounts cannot sign in.
    pub disabled: bool,
    /// Wrong passwords since the last good one.
    pub failures: u32,
    /// Locked after too many wrong passwords, until `manyi users passwd`.
    pub locked: bool,
}

/// One line of the audit trail.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditRow {
    /// When (UTC, RFC 3339).
    pub at: String,
    /// Who (the sign-in name typed or signed in).
    pub user: String,
    /// sign-in, sign-out, view, download.
    pub action: String,
    /// What was viewed (a report path), empty for sign-in.
    pub target: String,
    /// ok, wrong-password, locked, …
    pub outcome: String,
}

/// Figures of the data directory for the health page and `/metrics`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Monitor {
    /// Ratings stored (new records of every rating batch).
    pub ratings_stored: i64,
    /// Rows quarantined, all time.
    pub quarantined: i64,
    /// Rows quarantined per day (UTC date of the commit), last days first.
    pub quarantine_days: Vec<(String, i64)>,
    /// Current delivery records by state.
    pub deliveries_by_state: Vec<(String, i64)>,
    /// Reports held back (changed after delivery, not sent again): history lines.
    pub held: i64,
    /// The live `serve` holder, heartbeat in ms.
    pub service: Option<(String, i64)>,
}

impl Store {
    /// Adds an account; `false` when the name is taken.
    pub fn add_user(&self, name: &str, role: &str, office: Option<&str>, hash: &str) -> Result<bool, StoreError> {
        let now = Utc::now().to_rfc3339();
        let n = self.conn.execute(
            "INSERT INTO users (name, role, office, hash, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)
             ON CONFLICT (name) DO NOTHING",
            params![name, role, office, hash, now],
        )?;
        Ok(n == 1)
    }

    /// Sets a new password; clears the failures and the lock and ends the
    /// account's sessions. `false` when there is no such account.
    pub fn set_password(&self, name: &str, hash: &str) -> Result<bool, StoreError> {
        let n = self.conn.execute(
            "UPDATE users SET hash = ?2, failures = 0, locked = 0, updated_at = ?3 WHERE name = ?1",
            params![name, hash, Utc::now().to_rfc3339()],
        )?;
        self.conn.execute("DELETE FROM sessions WHERE user = ?1", params![name])?;
        Ok(n == 1)
    }

    /// Disables an account and ends its sessions; `false` when there is none.
    pub fn disable_user(&self, name: &str) -> Result<bool, StoreError> {
        let n =
            self.conn.execute("UPDATE users SET disabled = 1, updated_at = ?2 WHERE name = ?1", params![name, Utc::now().to_rfc3339()])?;
        self.conn.execute("DELETE FROM sessions WHERE user = ?1", params![name])?;
        Ok(n == 1)
    }

    /// An account by name.
    pub fn user(&self, name: &str) -> Result<Option<UserRow>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT name, role, office, hash, disabled, failures, locked FROM users WHERE name = ?1", params![name], |r| {
                Ok(UserRow {
                    name: r.get(0)?,
                    role: r.get(1)?,
                    office: r.get(2)?,
                    hash: r.get(3)?,
                    disabled: r.get::<_, i64>(4)? != 0,
                    failures: r.get::<_, i64>(5)?.max(0) as u32,
                    locked: r.get::<_, i64>(6)? != 0,
                })
            })
            .optional()?)
    }

    /// Counts a wrong password; locks the account at `limit`. Returns
    /// whether it is locked now.
    pub fn sign_in_failed(&self, name: &str, limit: u32) -> Result<bool, StoreError> {
        self.conn.execute(
            "UPDATE users SET failures = failures + 1, locked = CASE WHEN failures + 1 >= ?2 THEN 1 ELSE locked END WHERE name = ?1",
            params![name, limit],
        )?;
        Ok(self.user(name)?.is_some_and(|u| u.locked))
    }

    /// A good password: the failures start again from zero.
    pub fn sign_in_ok(&self, name: &str) -> Result<(), StoreError> {
        self.conn.execute("UPDATE users SET failures = 0 WHERE name = ?1", params![name])?;
        Ok(())
    }

    /// Opens a session under the SHA-256 of its token.
    pub fn create_session(&self, token_hash: &str, user: &str, csrf: &str, expires_ms: i64) -> Result<(), StoreError> {
        let now = Utc::now().timestamp_millis();
        // Expired sessions are swept whenever someone signs in.
        self.conn.execute("DELETE FROM sessions WHERE expires_ms < ?1", params![now])?;
        self.conn.execute(
            "INSERT INTO sessions (token_hash, user, csrf, created_ms, expires_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![token_hash, user, csrf, now, expires_ms],
        )?;
        Ok(())
    }

    /// The live session of a token hash: its account (still enabled and
    /// unlocked) and its CSRF token.
    pub fn session(&self, token_hash: &str, now_ms: i64) -> Result<Option<(UserRow, String)>, StoreError> {
        let found: Option<(String, String)> = self
            .conn
            .query_row("SELECT user, csrf FROM sessions WHERE token_hash = ?1 AND expires_ms > ?2", params![token_hash, now_ms], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        let Some((name, csrf)) = found else { return Ok(None) };
        Ok(self.user(&name)?.filter(|u| !u.disabled && !u.locked).map(|u| (u, csrf)))
    }

    /// Ends a session.
    pub fn end_session(&self, token_hash: &str) -> Result<(), StoreError> {
        self.conn.execute("DELETE FROM sessions WHERE token_hash = ?1", params![token_hash])?;
        Ok(())
    }

    /// Adds a line to the audit trail.
    pub fn audit(&self, user: &str, action: &str, target: &str, outcome: &str) -> Result<(), StoreError> {
        self.audit_at(Utc::now(), user, action, target, outcome)
    }

    /// Adds a line to the audit trail for something done at `at`.
    pub fn audit_at(&self, at: DateTime<Utc>, user: &str, action: &str, target: &str, outcome: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO audit (at, user, action, target, outcome) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![at.to_rfc3339(), user, action, target, outcome],
        )?;
        Ok(())
    }

    /// The last lines of the audit trail, newest first.
    pub fn audit_rows(&self, limit: usize) -> Result<Vec<AuditRow>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT at, user, action, target, outcome FROM audit ORDER BY id DESC LIMIT ?1")?;
        let rows = stmt.query_map(params![limit as i64], |r| {
            Ok(AuditRow { at: r.get(0)?, user: r.get(1)?, action: r.get(2)?, target: r.get(3)?, outcome: r.get(4)? })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The figures of the health page and `/metrics`; `days` of quarantine.
    pub fn monitor(&self, days: i64) -> Result<Monitor, StoreError> {
        let c = &self.conn;
        let ratings_stored = c.query_row("SELECT COALESCE(SUM(rows_new), 0) FROM batches WHERE kind = 'ratings'", [], |r| r.get(0))?;
        let quarantined = c.query_row("SELECT COALESCE(SUM(rows_quarantined), 0) FROM batches", [], |r| r.get(0))?;
        let since = Utc::now().timestamp_millis() - days * 86_400_000;
        let mut stmt = c.prepare(
            "SELECT substr(committed_at, 1, 10) AS day, SUM(rows_quarantined) FROM batches WHERE committed_at_ms >= ?1
             GROUP BY day ORDER BY day DESC",
        )?;
        let quarantine_days = stmt.query_map(params![since], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
        let mut stmt = c.prepare("SELECT state, COUNT(*) FROM deliveries GROUP BY state ORDER BY state")?;
        let deliveries_by_state = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
        let held = c.query_row("SELECT COUNT(*) FROM delivery_history WHERE state = 'held'", [], |r| r.get(0))?;
        let service = c
            .query_row("SELECT host || ' pid ' || pid, heartbeat_ms FROM service_lock WHERE id = 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        Ok(Monitor { ratings_stored, quarantined, quarantine_days, deliveries_by_state, held, service })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_lock_and_a_new_password_unlocks_and_ends_sessions() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = Store::open(tmp.path()).expect("store");
        assert!(store.add_user("a", "office", Some("o"), "h").expect("add"));
        assert!(!store.add_user("a", "admin", None, "h").expect("add again"), "a name is taken once");
        store.create_session("t", "a", "c", Utc::now().timestamp_millis() + 60_000).expect("session");
        assert!(store.session("t", Utc::now().timestamp_millis()).expect("read").is_some());
        let locked: Vec<bool> = (0..5).map(|_| store.sign_in_failed("a", 5).expect("fail")).collect();
        assert_eq!(locked, [false, false, false, false, true]);
        assert!(store.session("t", Utc::now().timestamp_millis()).expect("read").is_none(), "a locked account has no session");
        assert!(store.set_password("a", "h2").expect("passwd"));
        let u = store.user("a").expect("read").expect("row");
        assert!(!u.locked && u.failures == 0 && u.hash == "h2");
        assert!(store.disable_user("a").expect("disable"));
        assert!(!store.disable_user("nobody").expect("disable"));
    }
}
