//! Opening the database: WAL, foreign keys, a busy timeout for readers, and the
//! migrations in `migrations/` (embedded at build time).
//!
//! Errors here are user-facing (a path that is a directory, a corrupt file, a
//! database from a newer `sweep`), so each says what to do.
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database path {0} is a directory; pass a file path with --db or SWEEP_DB")]
    IsDirectory(PathBuf),
    #[error("no database at {0}; run a sweep first (`sweep run FILE`) or pass --db PATH")]
    Missing(PathBuf),
    #[error("database {path} was written by a newer sweep (schema version {found} > {known}); upgrade sweep")]
    Newer { path: PathBuf, found: i64, known: i64 },
    #[error("cannot open database {path}: {reason}\n  if the file is corrupt, move it away and rerun the sweep (finished trials are then run again)")]
    Open { path: PathBuf, reason: String },
}

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

pub fn default_path() -> PathBuf {
    PathBuf::from("results/results.db")
}

/// Opens (and with `create`, creates) the database and brings its schema up to date.
pub async fn open(path: &Path, create: bool) -> Result<SqlitePool, StoreError> {
    if path.is_dir() {
        return Err(StoreError::IsDirectory(path.to_path_buf()));
    }
    if !create && !path.exists() {
        return Err(StoreError::Missing(path.to_path_buf()));
    }
    if create {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| StoreError::Open { path: path.to_path_buf(), reason: e.to_string() })?;
        }
    }
    let opts = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(create)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(60));
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(opts)
        .await
        .map_err(|e| StoreError::Open { path: path.to_path_buf(), reason: e.to_string() })?;
    // Refuse a schema from the future before migrating (sqlx would also refuse, less clearly).
    let known = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
    let applied: Result<Option<i64>, sqlx::Error> = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations").fetch_one(&pool).await;
    if let Ok(Some(found)) = applied {
        if found > known {
            return Err(StoreError::Newer { path: path.to_path_buf(), found, known });
        }
    }
    MIGRATOR.run(&pool).await.map_err(|e| StoreError::Open { path: path.to_path_buf(), reason: e.to_string() })?;
    Ok(pool)
}
