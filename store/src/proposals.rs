//! The `proposals` table (`[random] sampler = "tpe"`): each point of a
//! sweep's search, written (with its trials' rows) in one transaction before
//! any of its trials starts, and read back when a sweep resumes.
use sqlx::{Sqlite, SqlitePool, Transaction};
use sweep_protocol::TrialParams;

/// One point of the sequence and its trials.
#[derive(Debug, Clone, PartialEq)]
pub struct ProposalRow {
    pub sweep_id: i64,
    pub k: i64,
    /// "random" or "tpe".
    pub sampler: String,
    pub budget: Option<i64>,
    pub observations: i64,
    pub params: serde_json::Value,
    pub coords: Vec<f64>,
    /// (trial id, ordinal among the sweep's trials, config), one per seed.
    pub trials: Vec<(String, i64, TrialParams)>,
    pub time: f64,
}

/// Writes a proposal and inserts its trials as `queued` (a trial that exists
/// already is left alone). Called by the recorder inside its transaction.
pub(super) async fn insert(
    tx: &mut Transaction<'_, Sqlite>,
    p: &ProposalRow,
) -> Result<(), sqlx::Error> {
    for (id, ordinal, c) in &p.trials {
        super::recorder::insert_trial(
            tx,
            id,
            p.sweep_id,
            *ordinal,
            c,
            p.time,
            super::recorder::OnConflict::Nothing,
        )
        .await?;
    }
    let ids: Vec<&str> = p.trials.iter().map(|(id, _, _)| id.as_str()).collect();
    sqlx::query("INSERT OR IGNORE INTO proposals (sweep_id, k, sampler, budget, observations, params, coords, trial_ids, time) VALUES (?,?,?,?,?,?,?,?,?)")
        .bind(p.sweep_id)
        .bind(p.k)
        .bind(&p.sampler)
        .bind(p.budget)
        .bind(p.observations)
        .bind(p.params.to_string())
        .bind(serde_json::to_string(&p.coords).unwrap_or_default())
        .bind(serde_json::to_string(&ids).unwrap_or_default())
        .bind(p.time)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A sweep's proposals in order: (k, sampler, coords).
pub async fn of_sweep(
    pool: &SqlitePool,
    sweep_id: i64,
) -> Result<Vec<(i64, String, Vec<f64>)>, sqlx::Error> {
    let rows: Vec<(i64, String, String)> =
        sqlx::query_as("SELECT k, sampler, coords FROM proposals WHERE sweep_id = ? ORDER BY k")
            .bind(sweep_id)
            .fetch_all(pool)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(k, s, c)| (k, s, serde_json::from_str(&c).unwrap_or_default()))
        .collect())
}
