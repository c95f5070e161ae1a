//! The SQLite store. `db` opens and migrates; `recorder` is the only writer
//! while a sweep runs; `queries` is the read side for reports.
pub mod db;
pub mod queries;
pub mod recorder;

pub fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}
