//! Transfer learning as PyTorch does it: from a torchvision checkpoint
//! (ImageNet-shaped, 1000 classes; made here by torchvision's own constructors
//! with random weights, nothing downloaded), a 12-class model with
//! `head = "original"` loads every tensor whose name and shape fit and
//! replaces only the layer sized by the class count: `classifier.6` for VGG
//! (fc6/fc7, `classifier.0` and `classifier.3`, are kept), `fc` for ResNet.
//! An MLP head is new as a whole. `predict` refuses weights whose classifier
//! does not fit. And a real trial (the `sweep-worker` binary, as `sweep run`
//! starts it) with `freeze_backbone` keeps fc6/fc7 exactly while training fc8.
//!
//! Needs the project's PyTorch/torchvision (`SWEEP_PYTHON`, set by `make
//! test`); a missing Python fails the test.
use crate::common;
use common::python;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use sweep_protocol::config::{Head, SelectMetric, TrialConfig, WorkerJob};
use sweep_worker::{models, pth, weights};
use tch::{Device, Tensor, nn};

const WORKER: &str = env!("CARGO_BIN_EXE_sweep-worker");
const CLASSES: i64 = 12;

/// torchvision's `name` with its default 1000 classes, random weights and
/// randomised BatchNorm statistics (and LayerNorms, layer scales; `torch_models.randomise_for_parity`), saved as torchvision would (`torch.save`
/// of the state_dict) in each of `formats` (pth, legacy.pth, safetensors).
const MAKE: &str = r#"
import sys, torch, torchvision
sys.path.insert(0, sys.argv[1])
from safetensors.torch import save_file
from torch_models import randomise_for_parity
out, name, formats = sys.argv[2], sys.argv[3], sys.argv[4:]
torch.manual_seed(0)
model = getattr(torchvision.models, name)(weights=None)
randomise_for_parity(model)
sd = model.state_dict()
for f in formats:
    path = f"{out}/{name}.{f}"
    if f == "pth":
        torch.save(sd, path)
    elif f == "legacy.pth":
        torch.save(sd, path, _use_new_zipfile_serialization=False)
    else:
        save_file({k: v.contiguous() for k, v in sd.items()}, path)
"#;

fn make(dir: &Path, name: &str, formats: &[&str]) -> Vec<PathBuf> {
    let out = Command::new(python())
        .args(["-c", MAKE, concat!(env!("CARGO_MANIFEST_DIR"), "/../tests")])
        .arg(dir)
        .arg(name)
        .args(formats)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "making {name} with torchvision failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    formats
        .iter()
        .map(|f| dir.join(format!("{name}.{f}")))
        .collect()
}

fn equal(a: &Tensor, b: &Tensor) -> bool {
    a.size() == b.size() && a.kind() == b.kind() && a.equal(b)
}

/// Builds `backbone` with `classes` outputs and `head`, snapshots its fresh
/// variables, loads `file`; returns (fresh, loaded, report, head_prefix).
fn load(
    backbone: &str,
    classes: i64,
    head: &Head,
    file: &Path,
) -> (
    HashMap<String, Tensor>,
    HashMap<String, Tensor>,
    weights::LoadReport,
    &'static str,
) {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let net = models::build(&vs.root(), backbone, classes, head).unwrap();
    let fresh: HashMap<String, Tensor> = vs
        .variables()
        .into_iter()
        .map(|(k, t)| (k, t.copy()))
        .collect();
    let report =
        weights::load_into(&mut vs, file, net.head_prefix).unwrap_or_else(|e| panic!("{e}"));
    (fresh, vs.variables(), report, net.head_prefix)
}

fn names(report: &weights::LoadReport) -> Vec<&str> {
    let mut v: Vec<&str> = report.replaced.iter().map(|(n, _, _)| n.as_str()).collect();
    v.sort();
    v
}

/// Every variable in `loaded` equals the file's tensor of the same name
/// exactly, except those that `replaced(name)`, which keep their fresh
/// values. Returns how many were compared with the file.
fn check(
    loaded: &HashMap<String, Tensor>,
    fresh: &HashMap<String, Tensor>,
    file: &HashMap<String, Tensor>,
    replaced: impl Fn(&str) -> bool,
    what: &str,
) -> usize {
    let mut from_file = 0;
    for (k, t) in loaded {
        if replaced(k) {
            assert!(
                equal(t, &fresh[k]),
                "{what}: {k} was replaced, so it must keep its fresh initialisation"
            );
            if let Some(f) = file.get(k) {
                assert!(
                    f.size() != t.size() || !equal(t, f) || k.ends_with(".bias"),
                    "{what}: {k} came from the file"
                );
            }
        } else {
            let f = file
                .get(k)
                .unwrap_or_else(|| panic!("{what}: {k} is not in the file"));
            assert!(equal(t, f), "{what}: {k} differs from the file");
            // (Conv and Linear biases start at 0 in both; Swin's
            // relative_position_index is a constant buffer, computed alike.)
            assert!(
                !equal(t, &fresh[k])
                    || k.ends_with(".bias")
                    || k.ends_with(".relative_position_index"),
                "{what}: {k} still has its fresh values"
            );
            from_file += 1;
        }
    }
    from_file
}

#[test]
fn resnet18_replaces_only_fc() {
    let _memory = crate::memory_lock();
    let _torch = common::torch_global();
    let dir = tempfile::tempdir().unwrap();
    let files = make(
        dir.path(),
        "resnet18",
        &["pth", "legacy.pth", "safetensors"],
    );
    for file in &files {
        let what = file.file_name().unwrap().to_string_lossy().into_owned();
        let contents = weights::read(file).unwrap();
        let (fresh, loaded, report, prefix) = load("resnet18", CLASSES, &Head::Original, file);
        assert_eq!(prefix, "fc");
        assert_eq!(names(&report), ["fc.bias", "fc.weight"], "{what}");
        assert_eq!(loaded["fc.weight"].size(), [CLASSES, 512]);
        let n = check(&loaded, &fresh, &contents, |k| k.starts_with("fc."), &what);
        assert_eq!(
            n, 100,
            "{what}: every conv, BatchNorm weight/bias and running statistic"
        );
        assert_eq!((report.loaded, report.head_skipped), (100, 2));
        let line = report.summary(file, prefix);
        assert!(
            line.contains("layer4 (")
                && line.contains("fc.weight [12, 512] (the file's is [1000, 512])"),
            "{line}"
        );
    }

    // With the file's own class count nothing is replaced: fc is loaded too.
    let contents = weights::read(&files[0]).unwrap();
    let (fresh, loaded, report, _) = load("resnet18", 1000, &Head::Original, &files[0]);
    assert!(report.replaced.is_empty());
    assert_eq!(
        check(&loaded, &fresh, &contents, |_| false, "1000 classes"),
        102
    );

    // An MLP head is new as a whole; the file's fc is ignored.
    let (fresh, loaded, report, _) = load(
        "resnet18",
        CLASSES,
        &Head::Mlp {
            hidden: vec![512],
            dropout: 0.0,
        },
        &files[0],
    );
    assert_eq!(
        names(&report),
        ["fc.0.bias", "fc.0.weight", "fc.2.bias", "fc.2.weight"]
    );
    assert_eq!(report.ignored, ["fc.bias", "fc.weight"]);
    assert_eq!(
        check(&loaded, &fresh, &contents, |k| k.starts_with("fc."), "mlp"),
        100
    );

    // predict refuses weights whose classifier does not fit instead of
    // predicting with a random layer.
    let refused = predict(&files[0], "resnet18", CLASSES);
    assert!(
        refused.contains("does not match 12 classes")
            && refused.contains("fc.weight: file [1000, 512] vs model [12, 512]"),
        "{refused}"
    );
}

/// `sweep-worker predict` with `classes` classes and the original head;
/// must fail, returns its stderr.
fn predict(weights: &Path, backbone: &str, classes: i64) -> String {
    let job = sweep_protocol::PredictJob {
        backbone: backbone.into(),
        head: Head::Original,
        weights: weights.to_path_buf(),
        classes: (0..classes).map(|c| c.to_string()).collect(),
        named_classes: false,
        image_size: 32,
        paths: vec![],
    };
    let out = Command::new(WORKER)
        .args(["predict", "--job", &serde_json::to_string(&job).unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "predict should refuse: {err}");
    assert!(out.stdout.is_empty(), "predict printed predictions");
    err
}

#[test]
fn vgg16_bn_keeps_fc6_fc7_and_replaces_fc8() {
    let _memory = crate::memory_lock();
    let _torch = common::torch_global();
    let dir = tempfile::tempdir().unwrap();
    let file = make(dir.path(), "vgg16_bn", &["pth"]).remove(0);
    let contents = pth::read(&file)
        .unwrap()
        .into_iter()
        .collect::<HashMap<_, _>>();
    assert_eq!(contents["classifier.6.weight"].size(), [1000, 4096]);

    let (fresh, loaded, report, prefix) = load("vgg16_bn", CLASSES, &Head::Original, &file);
    assert_eq!(prefix, "classifier.6");
    assert_eq!(names(&report), ["classifier.6.bias", "classifier.6.weight"]);
    assert_eq!(loaded["classifier.6.weight"].size(), [CLASSES, 4096]);
    let n = check(
        &loaded,
        &fresh,
        &contents,
        |k| k.starts_with("classifier.6."),
        "vgg16_bn original",
    );
    // 13 conv layers (weight, bias), 13 BatchNorms (weight, bias, running mean/var), fc6, fc7.
    assert_eq!(n, 13 * 2 + 13 * 4 + 4);
    for k in [
        "classifier.0.weight",
        "classifier.0.bias",
        "classifier.3.weight",
        "classifier.3.bias",
    ] {
        assert!(equal(&loaded[k], &contents[k]), "{k}");
    }
    let line = report.summary(&file, prefix);
    assert!(
        line.contains(
            "loaded 82 tensors: classifier.0 (2), classifier.3 (2), features (78); replaced"
        ),
        "{line}"
    );
    assert!(line.contains("replaced (sized by the class count, freshly initialised): classifier.6.bias [12] (the file's is [1000]), classifier.6.weight [12, 4096] (the file's is [1000, 4096])"), "{line}");
    drop((fresh, loaded));
    // (An MLP head shaped exactly like fc6/fc7 is new as a whole: its head
    // prefix is all of `classifier`, see models.rs's tests; predict's refusal
    // of a replaced layer is checked with resnet18 above.)

    // A real trial: 1 epoch, head original, frozen backbone.
    let data = dir.path().join("data");
    sweep_dataset::demo::generate(
        &data,
        &sweep_dataset::demo::DemoOptions {
            per_class: 2,
            image_size: 32,
            seed: 1,
        },
    )
    .unwrap();
    let out_dir = dir.path().join("trial");
    let job = WorkerJob {
        trial: "t".into(),
        sweep: "s".into(),
        dataset: data,
        out_dir: out_dir.clone(),
        threads: 2,
        config: TrialConfig {
            backbone: "vgg16_bn".into(),
            lr: 0.01,
            epochs: 1,
            image_size: 32,
            batch_size: 8,
            head: Head::Original,
            freeze_backbone: true,
            max_batches: 2,
            augment: vec![],
            pretrained: Some(file.clone()),
            ..TrialConfig::default()
        },
        select: SelectMetric::ValAccuracy,
        dataset_hash: None,
        pause_after: None,
    };
    let out = Command::new(WORKER)
        .args(["--job", &serde_json::to_string(&job).unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the trial failed:\n{stderr}");
    assert!(
        stderr.contains("classifier.0 (2), classifier.3 (2), features (78); replaced (sized by the class count, freshly initialised): classifier.6.bias"),
        "the worker's log says what it loaded and replaced:\n{stderr}"
    );
    let best = std::fs::read(out_dir.join("best.safetensors")).unwrap();
    let best = safetensors::SafeTensors::deserialize(&best).unwrap();
    let mut kept = 0;
    for (name, t) in best.tensors() {
        if name.starts_with("classifier.6.") {
            assert_eq!(t.shape()[0], CLASSES as usize, "{name}");
            continue;
        }
        let f = contents.get(&name).unwrap_or_else(|| {
            panic!("best.safetensors holds {name}, which the model does not have")
        });
        let mut bytes = vec![0u8; f.numel() * 4];
        f.copy_data_u8(&mut bytes, f.numel());
        assert_eq!(
            t.shape().iter().map(|&d| d as i64).collect::<Vec<_>>(),
            f.size(),
            "{name}"
        );
        assert!(
            t.data() == bytes.as_slice(),
            "{name} changed during a frozen-backbone trial, or was not loaded from the file"
        );
        kept += 1;
    }
    assert_eq!(
        kept,
        13 * 6 + 4,
        "every backbone tensor and fc6/fc7 compared"
    );
}

/// The newer families from torchvision's 1000-class files: `head =
/// "original"` replaces exactly the class layer (`classifier.2` ConvNeXt,
/// `classifier.1` EfficientNet, `classifier.3` MobileNetV3 — its
/// `classifier.0` is kept —, `fc` RegNet, `heads.head` ViT, `head` Swin,
/// whose `relative_position_index` buffers load like any tensor) and loads every
/// other tensor from the file; an MLP head replaces what it names and the
/// file's classifier is ignored; a ViT built for 64 px loads the 224-px file
/// with its position embeddings interpolated, and says so.
#[test]
fn newer_backbones_replace_only_the_class_layer() {
    let _memory = crate::memory_lock();
    let _torch = common::torch_global();
    let dir = tempfile::tempdir().unwrap();
    for (backbone, class_layer, mlp, ignored) in [
        (
            "convnext_tiny",
            "classifier.2",
            "classifier.2",
            &["classifier.2"][..],
        ),
        (
            "efficientnet_b0",
            "classifier.1",
            "classifier",
            &["classifier.1"][..],
        ),
        (
            "mobilenet_v3_large",
            "classifier.3",
            "classifier",
            &["classifier.0", "classifier.3"][..],
        ),
        ("regnet_y_3_2gf", "fc", "fc", &["fc"][..]),
        ("vit_b_16", "heads.head", "heads", &["heads.head"][..]),
        ("swin_t", "head", "head", &["head"][..]),
    ] {
        let file = make(dir.path(), backbone, &["pth"]).remove(0);
        let contents = weights::read(&file).unwrap();
        let (fresh, loaded, report, prefix) = load(backbone, CLASSES, &Head::Original, &file);
        assert_eq!(prefix, class_layer);
        assert_eq!(
            names(&report),
            [
                format!("{class_layer}.bias"),
                format!("{class_layer}.weight")
            ],
            "{backbone}"
        );
        let head = format!("{class_layer}.");
        let n = check(
            &loaded,
            &fresh,
            &contents,
            |k| k.starts_with(&head),
            backbone,
        );
        assert_eq!(
            n,
            loaded.len() - 2,
            "{backbone}: all but the class layer from the file"
        );

        let mlp_head = Head::Mlp {
            hidden: vec![64],
            dropout: 0.0,
        };
        let (fresh, loaded, report, prefix) = load(backbone, CLASSES, &mlp_head, &file);
        assert_eq!(prefix, mlp, "{backbone}");
        let mut want_ignored: Vec<String> = ignored
            .iter()
            .flat_map(|l| [format!("{l}.bias"), format!("{l}.weight")])
            .collect();
        want_ignored.sort();
        assert_eq!(report.ignored, want_ignored, "{backbone}");
        let head = format!("{mlp}.");
        let n = check(
            &loaded,
            &fresh,
            &contents,
            |k| k.starts_with(&head),
            backbone,
        );
        assert_eq!(
            n,
            loaded.len() - 4,
            "{backbone}: all but the MLP head from the file"
        );
        let _ = std::fs::remove_file(&file);

        if backbone == "vit_b_16" {
            let file = make(dir.path(), backbone, &["safetensors"]).remove(0);
            let mut vs = nn::VarStore::new(Device::Cpu);
            let net =
                models::build_sized(&vs.root(), backbone, CLASSES, &Head::Original, 64).unwrap();
            let report = weights::load(&mut vs, &file, net.head_prefix).unwrap();
            assert_eq!(
                report.resized,
                [(
                    "encoder.pos_embedding".to_string(),
                    vec![1, 197, 768],
                    vec![1, 17, 768]
                )]
            );
            let line = report.summary(&file, net.head_prefix);
            assert!(
                line.contains("interpolated from [1, 197, 768] to [1, 17, 768]"),
                "{line}"
            );
        }
    }
}

/// A ResNet file given to ConvNeXt: the error names the missing and the
/// unexpected keys, and says what to check.
#[test]
fn a_resnet_file_for_convnext_names_missing_and_unexpected_keys() {
    let _memory = crate::memory_lock();
    let _torch = common::torch_global();
    let dir = tempfile::tempdir().unwrap();
    let file = make(dir.path(), "resnet18", &["pth"]).remove(0);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let net = models::build(&vs.root(), "convnext_tiny", CLASSES, &Head::Original).unwrap();
    let err = weights::load(&mut vs, &file, net.head_prefix)
        .expect_err("a resnet18 file does not fit convnext_tiny")
        .to_string();
    assert!(
        err.contains("missing (180)")
            && err.contains("features.1.0.block.0.weight")
            && err.contains("unexpected (")
            && err.contains("layer1.0.conv1.weight")
            && err.contains("same backbone"),
        "{err}"
    );
}
