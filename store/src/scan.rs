//! Bulk reads straight from SQLite, for the few queries that return
//! hundreds of thousands of short rows (`sweep serve`'s first read of a
//! 10,000-trial sweep: 223,000 curve values, 34,000 decisions).
//!
//! Why: sqlx hands each row from its worker thread to the caller through a
//! channel, every value copied on its own (`sqlite3_value_dup`) and every
//! column found by name; about a microsecond and a half a row on the
//! development machine, a third of a second for those curves, against
//! SQLite's own 40 ms. [`scan`] steps the statement on the connection that
//! sqlx holds ([`SqliteConnection::lock_handle`]: its worker thread waits
//! meanwhile), inside whatever transaction that connection is in, and hands
//! each row to a closure that reads the columns it wants in place.
//!
//! This is the store's only `unsafe`, kept to the few calls below: one
//! statement, prepared, bound, stepped and finalized on one handle that
//! nothing else uses while the lock is held. Every value from a caller is
//! bound as a parameter, never spliced into the SQL.
use libsqlite3_sys as ffi;
use sqlx::SqliteConnection;
use sqlx::error::{DatabaseError, ErrorKind};
use std::borrow::Cow;
use std::ffi::{CStr, c_int};
use std::marker::PhantomData;
use std::ptr;

/// A value bound to a `?` of the statement, in order.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    Int(i64),
    Text(&'a str),
}

/// The row the statement is on; valid inside the closure only.
pub struct Row<'s> {
    stmt: *mut ffi::sqlite3_stmt,
    _borrow: PhantomData<&'s ()>,
}

impl Row<'_> {
    fn null(&self, i: c_int) -> bool {
        // SAFETY: `stmt` is a live statement positioned on a row (SQLITE_ROW).
        unsafe { ffi::sqlite3_column_type(self.stmt, i) == ffi::SQLITE_NULL }
    }

    /// Column `i` as an integer (NULL reads 0, as SQLite converts).
    pub fn int(&self, i: c_int) -> i64 {
        // SAFETY: as in `null`; an index past the columns reads NULL.
        unsafe { ffi::sqlite3_column_int64(self.stmt, i) }
    }

    /// Column `i` as a float (NULL reads 0.0).
    pub fn real(&self, i: c_int) -> f64 {
        // SAFETY: as in `null`.
        unsafe { ffi::sqlite3_column_double(self.stmt, i) }
    }

    pub fn opt_int(&self, i: c_int) -> Option<i64> {
        (!self.null(i)).then(|| self.int(i))
    }

    pub fn opt_real(&self, i: c_int) -> Option<f64> {
        (!self.null(i)).then(|| self.real(i))
    }

    /// Column `i` as text (NULL reads ""; bytes that are not UTF-8 are
    /// replaced, never trusted).
    pub fn text(&self, i: c_int) -> Cow<'_, str> {
        // SAFETY: `sqlite3_column_text` then `sqlite3_column_bytes`, in
        // that order, as SQLite documents; the pointer stays valid until the
        // statement steps again, which cannot happen while `self` is borrowed.
        unsafe {
            let p = ffi::sqlite3_column_text(self.stmt, i);
            if p.is_null() {
                return Cow::Borrowed("");
            }
            let n = ffi::sqlite3_column_bytes(self.stmt, i).max(0) as usize;
            String::from_utf8_lossy(std::slice::from_raw_parts(p, n))
        }
    }

    pub fn opt_text(&self, i: c_int) -> Option<String> {
        (!self.null(i)).then(|| self.text(i).into_owned())
    }
}

/// An error SQLite returned to [`scan`], as sqlx reports its own (so that
/// callers and `sqlx::Error::as_database_error` see the code and message).
#[derive(Debug, thiserror::Error)]
#[error("{message} (SQLite code {code}, in: {sql})")]
pub struct ScanError {
    /// The extended result code.
    pub code: i32,
    pub message: String,
    /// The statement's first 200 characters.
    pub sql: String,
}

impl DatabaseError for ScanError {
    fn message(&self) -> &str {
        &self.message
    }
    fn code(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Owned(self.code.to_string()))
    }
    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }
    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }
    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }
    fn kind(&self) -> ErrorKind {
        ErrorKind::Other
    }
}

/// Finalizes the statement however the scan ends.
struct Stmt(*mut ffi::sqlite3_stmt);

impl Drop for Stmt {
    fn drop(&mut self) {
        // SAFETY: a statement from `sqlite3_prepare_v2` (or null, a no-op), finalized once.
        unsafe {
            ffi::sqlite3_finalize(self.0);
        }
    }
}

fn error(db: *mut ffi::sqlite3, rc: c_int, sql: &str) -> sqlx::Error {
    // SAFETY: `db` is the live handle; `sqlite3_errmsg` returns a C string
    // owned by it, copied out at once.
    let (code, message) = unsafe {
        let code = ffi::sqlite3_extended_errcode(db);
        let msg = ffi::sqlite3_errmsg(db);
        let message = if msg.is_null() {
            format!("SQLite error {rc}")
        } else {
            CStr::from_ptr(msg).to_string_lossy().into_owned()
        };
        (if code == 0 { rc } else { code }, message)
    };
    sqlx::Error::Database(Box::new(ScanError {
        code,
        message,
        sql: sql.chars().take(200).collect(),
    }))
}

/// Runs `sql` with `args` on `conn` and hands every row to `each`, in the
/// order SQLite returns them; returns how many rows there were. A read:
/// meant for `SELECT`s (the serve connection is `query_only` anyway).
pub async fn scan(
    conn: &mut SqliteConnection,
    sql: &str,
    args: &[Arg<'_>],
    each: impl FnMut(&Row<'_>),
) -> Result<u64, sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    let db = handle.as_raw_handle().as_ptr();
    let run = || step_all(db, sql, args, each);
    // A scan takes tens of milliseconds: on a multi-thread runtime the
    // other tasks move to another worker meanwhile.
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(run),
        _ => run(),
    }
}

fn step_all(
    db: *mut ffi::sqlite3,
    sql: &str,
    args: &[Arg<'_>],
    mut each: impl FnMut(&Row<'_>),
) -> Result<u64, sqlx::Error> {
    let len = c_int::try_from(sql.len()).map_err(|_| error(db, ffi::SQLITE_TOOBIG, sql))?;
    let mut raw = ptr::null_mut();
    // SAFETY: `db` is the connection's handle, locked out from sqlx's worker
    // for the whole scan; `sql` and `len` describe one valid UTF-8 buffer.
    let rc =
        unsafe { ffi::sqlite3_prepare_v2(db, sql.as_ptr().cast(), len, &mut raw, ptr::null_mut()) };
    let stmt = Stmt(raw);
    if rc != ffi::SQLITE_OK {
        return Err(error(db, rc, sql));
    }
    if stmt.0.is_null() {
        // Only a comment or white space: no rows.
        return Ok(0);
    }
    for (i, a) in args.iter().enumerate() {
        let at = i as c_int + 1;
        // SAFETY: a live statement; SQLITE_TRANSIENT makes SQLite copy the text.
        let rc = unsafe {
            match *a {
                Arg::Int(v) => ffi::sqlite3_bind_int64(stmt.0, at, v),
                Arg::Text(s) => ffi::sqlite3_bind_text(
                    stmt.0,
                    at,
                    s.as_ptr().cast(),
                    c_int::try_from(s.len()).unwrap_or(c_int::MAX),
                    ffi::SQLITE_TRANSIENT(),
                ),
            }
        };
        if rc != ffi::SQLITE_OK {
            return Err(error(db, rc, sql));
        }
    }
    let mut n = 0;
    loop {
        // SAFETY: a live, bound statement.
        match unsafe { ffi::sqlite3_step(stmt.0) } {
            ffi::SQLITE_ROW => {
                n += 1;
                each(&Row {
                    stmt: stmt.0,
                    _borrow: PhantomData,
                });
            }
            ffi::SQLITE_DONE => return Ok(n),
            rc => return Err(error(db, rc, sql)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Connection;

    #[tokio::test]
    async fn scan_reads_every_type_binds_values_and_reports_errors_typed() {
        let mut c = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        sqlx::query("CREATE TABLE t (i INTEGER, r REAL, s TEXT)")
            .execute(&mut c)
            .await
            .unwrap();
        sqlx::query("INSERT INTO t VALUES (1, 0.1, 'a ☃'), (2, NULL, NULL), (3, 1e300, '')")
            .execute(&mut c)
            .await
            .unwrap();
        let mut rows = Vec::new();
        let n = scan(
            &mut c,
            "SELECT i, r, s FROM t WHERE i >= ? AND s IS NOT NULL AND s != ? ORDER BY i",
            &[Arg::Int(1), Arg::Text("nothing")],
            |r| rows.push((r.int(0), r.opt_real(1), r.opt_text(2))),
        )
        .await
        .unwrap();
        assert_eq!(n, 2, "{rows:?}");
        assert_eq!(
            rows,
            vec![
                (1, Some(0.1), Some("a ☃".to_string())),
                (3, Some(1e300), Some(String::new()))
            ]
        );
        let mut nulls = Vec::new();
        scan(&mut c, "SELECT r, s, i FROM t WHERE i = 2", &[], |r| {
            nulls.push((
                r.opt_real(0),
                r.opt_text(1),
                r.text(1).into_owned(),
                r.opt_int(2),
            ))
        })
        .await
        .unwrap();
        assert_eq!(nulls, vec![(None, None, String::new(), Some(2))]);
        // The connection is still sqlx's, usable after a scan.
        let k: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&mut c)
            .await
            .unwrap();
        assert_eq!(k, 3);
        let e = scan(&mut c, "SELECT nope FROM t", &[], |_| {})
            .await
            .unwrap_err();
        let d = e.as_database_error().expect("a database error");
        assert!(d.message().contains("no such column: nope"), "{e}");
        assert_eq!(d.code().as_deref(), Some("1"), "{e}");
        assert!(e.to_string().contains("SELECT nope FROM t"), "{e}");
    }
}
