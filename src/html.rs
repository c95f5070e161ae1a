//! The self-contained HTML report: placeholder until the report work lands.
use sqlx::SqlitePool;
use std::path::Path;

pub async fn write_html(_pool: &SqlitePool, _sweep: &str, _report: &crate::report::Report, _out: &Path) -> Result<(), String> {
    Err("sweep report --html is not available in this build".into())
}
