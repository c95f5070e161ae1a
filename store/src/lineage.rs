//! The `lineage` table (`[stopping] method = "pbt"`): which trial copied
//! which trial's checkpoint at which epoch, and the parameters it trains with
//! from then on. A PBT generation's decision rows and lineage rows are one
//! event, written in one transaction: a restarted coordinator finds all of a
//! generation or none of it.
use super::recorder::DecisionRow;
use sqlx::{Sqlite, SqlitePool, Transaction};

/// One exploit.
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow)]
pub struct LineageRow {
    pub trial_id: String,
    pub epoch: i64,
    pub donor_id: String,
    pub value: f64,
    pub donor_value: f64,
    /// JSON object: every parameter from here on.
    pub params: String,
    /// JSON object: {"lr": [the donor's value, the new value], ...}.
    pub changes: String,
    pub time: f64,
}

/// A PBT generation: every decision row and every exploit of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    pub decisions: Vec<DecisionRow>,
    pub lineage: Vec<LineageRow>,
}

/// Writes a generation (inside the recorder's transaction). A row already
/// there (a replay) is left alone.
pub(super) async fn insert(
    tx: &mut Transaction<'_, Sqlite>,
    g: &Generation,
) -> Result<(), sqlx::Error> {
    for d in &g.decisions {
        super::recorder::decision(tx, d).await?;
    }
    for l in &g.lineage {
        sqlx::query(
            "INSERT INTO lineage (trial_id, epoch, donor_id, value, donor_value, params, changes, time)
             VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (trial_id, epoch) DO NOTHING",
        )
        .bind(&l.trial_id)
        .bind(l.epoch)
        .bind(&l.donor_id)
        .bind(l.value)
        .bind(l.donor_value)
        .bind(&l.params)
        .bind(&l.changes)
        .bind(l.time)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Every exploit of a sweep, oldest first.
pub async fn of_sweep(pool: &SqlitePool, sweep: &str) -> Result<Vec<LineageRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT l.trial_id, l.epoch, l.donor_id, l.value, l.donor_value, l.params, l.changes, l.time
         FROM lineage l JOIN trials t ON t.id = l.trial_id JOIN sweeps s ON s.id = t.sweep_id
         WHERE s.name = ? ORDER BY l.epoch, l.trial_id",
    )
    .bind(sweep)
    .fetch_all(pool)
    .await
}

/// One trial's exploits, by epoch (none in a database older than the
/// table: `sweep serve` and the reports open files they never migrate).
pub async fn of_trial(pool: &SqlitePool, trial: &str) -> Result<Vec<LineageRow>, sqlx::Error> {
    let exists: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'lineage'")
            .fetch_optional(pool)
            .await?;
    if exists.is_none() {
        return Ok(vec![]);
    }
    sqlx::query_as(
        "SELECT trial_id, epoch, donor_id, value, donor_value, params, changes, time
         FROM lineage WHERE trial_id = ? ORDER BY epoch",
    )
    .bind(trial)
    .fetch_all(pool)
    .await
}
