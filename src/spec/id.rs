//! Trial ids. An id names a trial for ever: a finished trial is never rerun,
//! so an id must not change when the code changes. It is the first 10 hex
//! digits of SHA-256 over the sweep name, the dataset path and the canonical
//! JSON of the resolved `TrialConfig` (seed included); for a `[program]`
//! trial, the dataset path is empty and the JSON is its parameters' object
//! (keys sorted, seed included), so editing the command keeps the ids.
use sha2::{Digest, Sha256};
use sweep_protocol::TrialParams;

pub fn trial_id(sweep: &str, dataset: &std::path::Path, config: &TrialParams) -> String {
    let mut h = Sha256::new();
    h.update(sweep.as_bytes());
    h.update([0]);
    h.update(dataset.to_string_lossy().as_bytes());
    h.update([0]);
    // serde_json of a struct is deterministic (field order is declaration order).
    h.update(serde_json::to_vec(config).unwrap_or_default());
    let digest = h.finalize();
    digest.iter().take(5).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_is_stable_and_sensitive() {
        let c = sweep_protocol::TrialConfig::default();
        let p = std::path::Path::new("data/demo");
        let id = |s: &str, c: &sweep_protocol::TrialConfig| {
            trial_id(s, p, &TrialParams::Builtin(c.clone()))
        };
        let a = id("s", &c);
        assert_eq!(a.len(), 10);
        assert_eq!(a, id("s", &c.clone()));
        let mut d = c.clone();
        d.seed = 1;
        assert_ne!(a, id("s", &d));
        assert_ne!(a, id("t", &c));
    }
}
