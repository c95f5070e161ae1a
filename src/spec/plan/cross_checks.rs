//! Cross-checks between keys, found at validation time with the key's place.
use super::*;

fn plan(body: &str) -> Result<SweepPlan, SpecError> {
    plan_named("x", body)
}

/// The plan of a sweep named `name` over a two-class dataset, `body` after
/// its `[sweep]` table's name and dataset lines.
pub(super) fn plan_named(name: &str, body: &str) -> Result<SweepPlan, SpecError> {
    let dir = tempfile::tempdir().unwrap();
    for split in ["train", "valid", "test"] {
        for class in ["a", "b"] {
            let d = dir.path().join(split).join(class);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("0.png"), b"x").unwrap();
        }
    }
    let text = format!(
        "[sweep]\nname = \"{name}\"\ndataset = \"{}\"\n{body}",
        dir.path().display()
    );
    let src = Source {
        path: "x.toml".into(),
        text,
    };
    let raw = src.parse()?;
    build(&src, raw)
}

fn err(body: &str) -> String {
    let e = plan(body).unwrap_err();
    format!("{}:{}: {}", e.line, e.col, e.message)
}

#[test]
fn nesterov_needs_sgd_with_momentum() {
    assert_eq!(
        err("[defaults]\noptimizer = \"adam\"\nnesterov = true\n"),
        "6:1: `nesterov = true` needs optimizer = \"sgd\" (this trial uses Adam)"
    );
    assert_eq!(
        err("[defaults]\nmomentum = 0.0\nnesterov = true\n"),
        "6:1: `nesterov = true` needs `momentum` > 0"
    );
    assert!(plan("[defaults]\nmomentum = 0.9\nnesterov = true\n").is_ok());
}

#[test]
fn cache_size_and_channels_last() {
    let p = plan("[defaults]\ncache_size = 300\nchannels_last = true\n").unwrap();
    assert_eq!(
        p.trials[0].builtin().unwrap().cache_size,
        Some(sweep_protocol::config::CacheSize::Short(300))
    );
    assert!(p.trials[0].builtin().unwrap().channels_last);
    let p = plan("[defaults]\ncache_size = \"original\"\n").unwrap();
    assert_eq!(p.trials[0].builtin().unwrap().cache_short(), None);
    assert!(
        err("[defaults]\ncache_size = 100\n")
            .contains("`cache_size = 100` is smaller than image_size 224")
    );
    assert!(
        err("[defaults]\ncache_size = \"huge\"\n")
            .contains("`cache_size` must be a shorter side in pixels")
    );
    assert!(
        err("[defaults]\nchannels_last = 1\n").contains("`channels_last` must be true or false")
    );
}

#[test]
fn momentum_is_rejected_for_adam_and_betas_for_sgd() {
    assert!(
        err("[grid]\noptimizer = [\"sgd\", \"adamw\"]\n[defaults]\nmomentum = 0.8\n")
            .ends_with("`momentum` means nothing for Adamw: Adam and AdamW use `betas`")
    );
    assert!(
        err("[defaults]\nbetas = [0.8, 0.99]\n").contains("`betas` applies to adam and adamw only")
    );
    assert!(
        err("[defaults]\noptimizer = \"adam\"\nbetas = [0.8, 1.5]\n")
            .contains("values must be in [0, 1)")
    );
    let p = plan("[defaults]\noptimizer = \"adam\"\nbetas = [0.8, 0.99]\neps = 1e-6\n").unwrap();
    assert_eq!(
        (
            p.trials[0].builtin().unwrap().betas,
            p.trials[0].builtin().unwrap().eps
        ),
        ([0.8, 0.99], 1e-6)
    );
}

#[test]
fn adamw_defaults_to_pytorchs_weight_decay() {
    let p = plan("[grid]\noptimizer = [\"sgd\", \"adam\", \"adamw\"]\n").unwrap();
    let wd: Vec<f64> = p
        .trials
        .iter()
        .map(|t| t.builtin().unwrap().weight_decay)
        .collect();
    assert_eq!(wd, [0.0, 0.0, 0.01]);
    let p = plan("[defaults]\noptimizer = \"adamw\"\nweight_decay = 0.0\n").unwrap();
    assert_eq!(
        p.trials[0].builtin().unwrap().weight_decay,
        0.0,
        "an explicit value wins"
    );
}

#[test]
fn a_metric_must_be_a_validation_figure() {
    let e = plan("metric = \"accuracy\"\n").unwrap_err();
    assert!(e.help.unwrap().contains("must be a validation figure"));
}

#[test]
fn keep_precision_is_full_by_default_half_if_asked_and_located_when_wrong() {
    assert_eq!(
        plan("").unwrap().resources.keep_precision,
        KeepPrecision::Full
    );
    assert_eq!(
        plan("[resources]\nkeep_precision = \"half\"\n")
            .unwrap()
            .resources
            .keep_precision,
        KeepPrecision::Half
    );
    assert_eq!(
        plan("[resources]\nkeep_precision = \"full\"\n")
            .unwrap()
            .resources
            .keep_precision,
        KeepPrecision::Full
    );
    assert_eq!(
        err("[resources]\nkeep_precision = \"fp16\"\n"),
        "5:18: unknown `keep_precision` \"fp16\""
    );
    let e = plan("[resources]\nkeep_precision = \"fp16\"\n").unwrap_err();
    assert!(e.help.unwrap().contains("\"full\", \"half\""));
    assert!(
        err("[resources]\nkeep_precision = true\n").starts_with("5:18: invalid type"),
        "{}",
        err("[resources]\nkeep_precision = true\n")
    );
}

#[test]
fn stopping_is_validated() {
    assert!(err("[stopping]\nmethod = \"ashaa\"\n").contains("unknown stopping method \"ashaa\""));
    assert!(err("[stopping]\nreduction = 1\n").contains("`reduction` must be between 2 and 100"));
    let p = plan("[stopping]\nmethod = \"hyperband\"\nmin_epochs = 2\npatience = 4\n").unwrap();
    assert_eq!(
        (
            p.stopping.method,
            p.stopping.min_epochs,
            p.stopping.reduction,
            p.stopping.patience
        ),
        (StopMethod::Hyperband, 2, 3, Some(4))
    );
}

/// `layer_decay`: 0 < d ≤ 1, 1 (off) by default and then left out of the
/// trial's JSON (so trial ids do not change), a grid axis like any other.
#[test]
fn layer_decay_is_a_fraction_in_0_1() {
    let p = plan("[grid]\nlayer_decay = [0.65, 1.0]\n").unwrap();
    let d: Vec<f64> = p
        .trials
        .iter()
        .map(|t| t.builtin().unwrap().layer_decay)
        .collect();
    assert_eq!(d, [0.65, 1.0]);
    assert_eq!(p.varying, ["layer_decay"]);
    assert!(p.trials[1].config.to_json().get("layer_decay").is_none());
    assert_eq!(p.trials[0].config.to_json()["layer_decay"], 0.65);
    let off = plan("[defaults]\nepochs = 10\n").unwrap();
    assert_eq!(
        off.trials[0].config.to_json(),
        p.trials[1].config.to_json(),
        "layer_decay = 1 is the default: the same parameters, so the same trial id"
    );
    for bad in ["0", "0.0", "-0.5", "1.01", "nan", "inf"] {
        let e = err(&format!("[defaults]\nlayer_decay = {bad}\n"));
        assert!(
            e.contains("`layer_decay` must be > 0 and ≤ 1"),
            "{bad}: {e}"
        );
    }
    assert!(err("[defaults]\nlayer_decay = \"0.7\"\n").contains("`layer_decay` must be a number"));
}

/// ViT-B/16 cuts images into 16-px patches: another image size is refused
/// here, located, rather than failing every trial as it builds the model.
#[test]
fn vit_needs_an_image_size_multiple_of_16() {
    assert_eq!(
        err("[defaults]\nbackbone = \"vit_b_16\"\nimage_size = 100\n"),
        "6:1: vit_b_16 needs image_size to be a multiple of 16 (its patch size), not 100"
    );
    assert!(plan("[defaults]\nbackbone = \"vit_b_16\"\nimage_size = 384\n").is_ok());
    assert!(plan("[defaults]\nbackbone = \"resnet18\"\nimage_size = 100\n").is_ok());
}

/// With `sampler = "tpe"` the plan holds only the startup draws, but the
/// `[pretrained]` check before the start must load every file a later
/// proposal may use: each `backbone` choice with a `[pretrained]` entry,
/// for each `head` kind searched, with its file (resnet34 has none: it
/// trains from scratch, nothing to check).
#[test]
fn pretrained_uses_cover_every_backbone_tpe_may_propose() {
    let w = tempfile::tempdir().unwrap();
    let file = |b: &str| {
        let p = w.path().join(format!("{b}.pth"));
        std::fs::write(&p, b"x").unwrap();
        p
    };
    let (r18, cnx) = (file("resnet18"), file("convnext_tiny"));
    let p = plan(&format!(
        "[random]\nsamples = 6\nsampler = \"tpe\"\nstartup = 1\n\
         backbone = {{ choice = [\"resnet18\", \"convnext_tiny\", \"resnet34\"] }}\n\
         head = {{ choice = [\"original\", {{ hidden = [] }}] }}\n\n\
         [pretrained]\nresnet18 = \"{}\"\nconvnext_tiny = \"{}\"\n",
        r18.display(),
        cnx.display()
    ))
    .unwrap();
    assert_eq!(p.trials.len(), 1, "one startup draw");
    let mut got: Vec<(String, bool, PathBuf)> = p
        .pretrained_uses()
        .into_iter()
        .map(|c| {
            let original = matches!(c.head, Head::Original);
            (c.backbone, original, c.pretrained.unwrap())
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("convnext_tiny".to_string(), false, cnx.clone()),
            ("convnext_tiny".to_string(), true, cnx),
            ("resnet18".to_string(), false, r18.clone()),
            ("resnet18".to_string(), true, r18),
        ]
    );
    // Plain random draws are all planned: their trials are what is checked.
    let p = plan(&format!(
        "[random]\nsamples = 3\nbackbone = {{ choice = [\"resnet18\", \"resnet34\"] }}\n\n[pretrained]\nresnet18 = \"{}\"\n",
        w.path().join("resnet18.pth").display()
    ))
    .unwrap();
    let planned = p
        .trials
        .iter()
        .filter(|t| t.builtin().unwrap().backbone == "resnet18")
        .count();
    assert_eq!(p.pretrained_uses().len(), usize::from(planned > 0));
}
