//! Opening the database: WAL, foreign keys, a busy timeout for readers, and the
//! migrations in `migrations/` (embedded at build time).
//!
//! Errors here are user-facing (a path that is a directory, a corrupt file, a
//! database from a newer `sweep`), so each says what to do.
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database path {0} is a directory; pass a file path with --db or SWEEP_DB")]
    IsDirectory(PathBuf),
    #[error("no database at {0}; run a sweep first (`sweep run FILE`) or pass --db PATH")]
    Missing(PathBuf),
    #[error(
        "database {path} was written by a newer sweep (schema version {found} > {known}); upgrade sweep"
    )]
    Newer {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error(
        "database {path} has schema migration {version}, which this sweep does not know: it was written by a different version of sweep; use that version, or another --db"
    )]
    Unknown { path: PathBuf, version: i64 },
    #[error(
        "{path} is an SQLite database but not a sweep results database (it has tables {tables}); pass another --db, or SWEEP_DB"
    )]
    Foreign { path: PathBuf, tables: String },
    #[error(
        "cannot open database {path}: {reason}\n  if the file is corrupt, move it away and rerun the sweep (finished trials are then run again)"
    )]
    Open {
        path: PathBuf,
        reason: String,
        /// Whose problem it is: the file given, or the machine.
        cause: OpenCause,
    },
}

/// Why a database could not be opened, for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenCause {
    /// The file is not an SQLite database, or is damaged (SQLITE_NOTADB,
    /// SQLITE_CORRUPT): the path the user gave is wrong.
    NotADatabase,
    /// Locked past the busy timeout, unreadable, a full disk, an I/O error:
    /// the machine failed, the input may be right.
    Machine,
}

impl OpenCause {
    fn of(e: &sqlx::Error) -> OpenCause {
        let code = match e {
            sqlx::Error::Migrate(m) => match &**m {
                sqlx::migrate::MigrateError::Execute(e)
                | sqlx::migrate::MigrateError::ExecuteMigration(e, _) => {
                    return OpenCause::of(e);
                }
                _ => None,
            },
            e => e.as_database_error().and_then(|d| d.code()),
        };
        // Primary result codes (extended codes keep them in the low byte).
        match code.and_then(|c| c.parse::<i64>().ok()).map(|c| c & 0xff) {
            Some(11 | 26) => OpenCause::NotADatabase,
            _ => OpenCause::Machine,
        }
    }
}

fn open_failure(path: &Path, e: sqlx::Error) -> StoreError {
    StoreError::Open {
        path: path.to_path_buf(),
        reason: e.to_string(),
        cause: OpenCause::of(&e),
    }
}

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

pub fn default_path() -> PathBuf {
    PathBuf::from("results/results.db")
}

/// Folds the write-ahead log into the database file, so that `results.db`
/// alone holds everything (people copy it to a laptop without its `-wal`).
pub async fn checkpoint(pool: &SqlitePool) -> Result<(), sqlx::Error> {
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(pool)
        .await
        .map(drop)
}

/// Opens (and with `create`, creates) the database and brings its schema up to date.
pub async fn open(path: &Path, create: bool) -> Result<SqlitePool, StoreError> {
    if path.is_dir() {
        return Err(StoreError::IsDirectory(path.to_path_buf()));
    }
    if !create && !path.exists() {
        return Err(StoreError::Missing(path.to_path_buf()));
    }
    if create && let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| StoreError::Open {
            path: path.to_path_buf(),
            reason: e.to_string(),
            cause: OpenCause::Machine,
        })?;
    }
    // Look before touching: a file that is not ours, or from a newer sweep, is
    // refused before the WAL switch or a migration could change it.
    if path.metadata().is_ok_and(|m| m.len() > 0) {
        check_schema(path).await?;
    }
    let opts = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(create)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(60));
    let open_err = |e: sqlx::Error| open_failure(path, e);
    let connect = || {
        SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts.clone())
    };
    let pool = connect().await.map_err(open_err)?;
    let before = applied_versions(&pool).await;
    MIGRATOR
        .run(&pool)
        .await
        .map_err(|e| open_failure(path, e.into()))?;
    if applied_versions(&pool).await.len() == before.len() {
        return Ok(pool);
    }
    // A migration that edited the schema text (20261129000003) does not move
    // the schema cookie by itself: move it, and reconnect, so that every
    // connection (ours and other processes') reparses the schema.
    let version: i64 = sqlx::query_scalar("PRAGMA schema_version")
        .fetch_one(&pool)
        .await
        .map_err(open_err)?;
    sqlx::query(&format!("PRAGMA schema_version = {}", version + 1))
        .execute(&pool)
        .await
        .map_err(open_err)?;
    pool.close().await;
    connect().await.map_err(open_err)
}

async fn applied_versions(pool: &SqlitePool) -> Vec<i64> {
    sqlx::query_scalar("SELECT version FROM _sqlx_migrations")
        .fetch_all(pool)
        .await
        .unwrap_or_default()
}

/// Refuses, without writing anything, a database that is not sweep's (tables
/// but no migration table: even a read-only command would otherwise add
/// sweep's tables to it), one from a newer sweep, or one with a migration this
/// build does not know (sqlx would refuse those too, less clearly).
async fn check_schema(path: &Path) -> Result<(), StoreError> {
    use sqlx::{ConnectOptions, Connection};
    let open_err = |e: sqlx::Error| open_failure(path, e);
    // Default options: no journal-mode change, nothing created.
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .busy_timeout(Duration::from_secs(60))
        .connect()
        .await
        .map_err(open_err)?;
    let result = async {
        let tables: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%' ORDER BY name")
                .fetch_all(&mut conn)
                .await
                .map_err(open_err)?;
        if tables.is_empty() {
            return Ok(());
        }
        if !tables.iter().any(|t| t == "_sqlx_migrations") {
            let mut shown: Vec<&str> = tables.iter().map(String::as_str).take(5).collect();
            if tables.len() > 5 {
                shown.push("…");
            }
            return Err(StoreError::Foreign { path: path.to_path_buf(), tables: shown.join(", ") });
        }
        let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version").fetch_all(&mut conn).await.map_err(open_err)?;
        let known = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
        if let Some(found) = applied.iter().copied().filter(|&v| v > known).max() {
            return Err(StoreError::Newer { path: path.to_path_buf(), found, known });
        }
        if let Some(&version) = applied.iter().find(|v| !MIGRATOR.iter().any(|m| m.version == **v)) {
            return Err(StoreError::Unknown { path: path.to_path_buf(), version });
        }
        Ok(())
    }
    .await;
    let _ = conn.close().await;
    result
}
