//! `[random] sampler = "lhs"`: a Latin hypercube over the same distributions.
use super::*;

use super::cross_checks::plan_named as plan;

const SPACE: &str = "lr = { loguniform = [0.0001, 0.05] }\nweight_decay = { choice = [0.0, 0.0001, 0.001] }\nepochs = { int = [1, 5] }\n";

/// (lr, weight_decay, epochs) of each planned trial.
fn points(p: &SweepPlan) -> Vec<(f64, f64, u32)> {
    p.trials
        .iter()
        .map(|t| {
            let b = t.builtin().unwrap();
            (b.lr, b.weight_decay, b.epochs)
        })
        .collect()
}

/// The fifth of the log range each lr falls in.
fn lr_strata(p: &[(f64, f64, u32)]) -> Vec<usize> {
    let (lo, hi) = (0.0001f64.ln(), 0.05f64.ln());
    let mut s: Vec<usize> = p
        .iter()
        .map(|(lr, _, _)| ((lr.ln() - lo) / (hi - lo) * 5.0) as usize)
        .collect();
    s.sort();
    s
}

#[test]
fn five_points_put_one_in_each_fifth_of_every_range() {
    // Many sweep names (seeds): the stratification holds for every one,
    // where five independent draws leave a fifth of the lr range empty
    // about one time in three.
    let mut random_gaps = 0;
    for k in 0..40 {
        let name = format!("s{k}");
        let lhs = points(
            &plan(
                &name,
                &format!("[random]\nsamples = 5\nsampler = \"lhs\"\n{SPACE}"),
            )
            .unwrap(),
        );
        assert_eq!(lr_strata(&lhs), [0, 1, 2, 3, 4], "{name}: {lhs:?}");
        let mut epochs: Vec<u32> = lhs.iter().map(|p| p.2).collect();
        epochs.sort();
        assert_eq!(epochs, [1, 2, 3, 4, 5], "{name}: each integer once");
        let mut counts = [0.0, 0.0001, 0.001].map(|wd| lhs.iter().filter(|p| p.1 == wd).count());
        counts.sort();
        assert_eq!(counts, [1, 2, 2], "{name}: each choice 1 or 2 times of 5");
        let random = points(&plan(&name, &format!("[random]\nsamples = 5\n{SPACE}")).unwrap());
        assert_ne!(lhs, random, "{name}");
        if lr_strata(&random) != [0, 1, 2, 3, 4] {
            random_gaps += 1;
        }
    }
    assert!(
        random_gaps > 20,
        "random draws left a gap in only {random_gaps} of 40"
    );
}

#[test]
fn the_same_file_plans_the_same_points() {
    let text = format!("[random]\nsamples = 7\nsampler = \"lhs\"\n{SPACE}");
    let a = points(&plan("same", &text).unwrap());
    assert_eq!(a.len(), 7);
    assert_eq!(a, points(&plan("same", &text).unwrap()));
    assert_ne!(a, points(&plan("other", &text).unwrap()));
}

#[test]
fn startup_is_for_tpe_only() {
    let e = plan(
        "x",
        &format!("[random]\nsamples = 5\nsampler = \"lhs\"\nstartup = 2\n{SPACE}"),
    )
    .unwrap_err();
    assert_eq!(
        (e.line, e.message.as_str()),
        (7, "`startup` applies to sampler = \"tpe\" only")
    );
    let e = plan(
        "x",
        &format!("[random]\nsamples = 5\nsampler = \"sobol\"\n{SPACE}"),
    )
    .unwrap_err();
    assert!(e.help.as_deref().unwrap_or("").contains("\"lhs\""), "{e:?}");
}
