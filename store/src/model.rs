//! The store's vocabulary: closed sets that are enums in code and text only
//! in the database (`trials.status`, `sweeps.status`, `attempts.error_class`),
//! and the rows that one side writes and others read ([`DecisionRow`]).
use serde::{Deserialize, Serialize};

/// A trial's lifecycle (`trials.status`). Also the values of `sweep report
/// --status` (clap), which has always offered every status but `pruned`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
#[sqlx(rename_all = "lowercase")]
#[value(rename_all = "lowercase")]
pub enum TrialStatus {
    Queued,
    Running,
    Done,
    Failed,
    Interrupted,
    /// Stopped early by `[stopping]`: a success, not a failure.
    #[value(skip)]
    Pruned,
    /// Paused at a rung by promotion-based stopping, its checkpoint kept:
    /// resumed if promoted, else `pruned` when the sweep ends. (Not a
    /// `report --status` value, like `pruned`: that list is unchanged.)
    #[value(skip)]
    Paused,
}

impl TrialStatus {
    pub const ALL: [TrialStatus; 7] = [
        TrialStatus::Queued,
        TrialStatus::Running,
        TrialStatus::Done,
        TrialStatus::Failed,
        TrialStatus::Interrupted,
        TrialStatus::Pruned,
        TrialStatus::Paused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TrialStatus::Queued => "queued",
            TrialStatus::Running => "running",
            TrialStatus::Done => "done",
            TrialStatus::Failed => "failed",
            TrialStatus::Interrupted => "interrupted",
            TrialStatus::Pruned => "pruned",
            TrialStatus::Paused => "paused",
        }
    }

    /// Finished for good: never started again by `sweep run`.
    pub fn is_final(self) -> bool {
        matches!(self, TrialStatus::Done | TrialStatus::Pruned)
    }
}

impl std::fmt::Display for TrialStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a whole sweep run ended (`sweeps.status`; `running` while it runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepStatus {
    Done,
    Failed,
    Interrupted,
}

impl SweepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SweepStatus::Done => "done",
            SweepStatus::Failed => "failed",
            SweepStatus::Interrupted => "interrupted",
        }
    }
}

/// Why an attempt did not finish (`attempts.error_class`): what the worker
/// said (`ErrorClass`), or what the coordinator saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// Reported by the worker in an `error` message.
    Worker(sweep_protocol::ErrorClass),
    /// Died by a signal or exited non-zero without saying why.
    Crash,
    /// Ran past `[resources] timeout`.
    Timeout,
    /// Broke the protocol (e.g. exited 0 without `done`).
    Protocol,
    /// Stopped by the user (Ctrl-C / SIGTERM to `sweep run`).
    Interrupted,
    /// Stopped by an early-stopping decision (see the `decisions` table).
    Pruned,
    /// Slurm preempted its job (job state PREEMPTED).
    Preempted,
    /// Its Slurm job or step was cancelled by someone else (`scancel`).
    Cancelled,
}

impl FailureClass {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Worker(c) => c.as_str(),
            FailureClass::Crash => "crash",
            FailureClass::Timeout => "timeout",
            FailureClass::Protocol => "protocol",
            FailureClass::Interrupted => "interrupted",
            FailureClass::Pruned => "pruned",
            FailureClass::Preempted => "preempted",
            FailureClass::Cancelled => "cancelled",
        }
    }

    /// A failure that another attempt cannot fix (bad config or data).
    pub fn is_permanent(self) -> bool {
        use sweep_protocol::ErrorClass as E;
        matches!(self, FailureClass::Worker(E::Config | E::Data))
    }
}

impl std::fmt::Display for FailureClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One early-stopping decision: a row of the `decisions` table, as the
/// recorder writes it and as `sweep report`, the coordinator's restore and
/// `sweep serve` read it back.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct DecisionRow {
    pub trial_id: String,
    pub epoch: i64,
    /// asha, hyperband, median, patience.
    pub method: String,
    /// asha/hyperband: the rung's index (0: the first).
    pub rung: Option<i64>,
    /// asha/hyperband: the bracket (asha: 0).
    pub bracket: Option<i64>,
    pub metric: String,
    /// The trial's value at this epoch.
    pub value: f64,
    /// The value it had to reach.
    pub cutoff: Option<f64>,
    /// Records compared with (patience: epochs since the best).
    pub compared: i64,
    /// continue, stop, pause or promote (text: a newer `sweep`'s action
    /// shows as it is).
    pub action: String,
    pub time: f64,
}
