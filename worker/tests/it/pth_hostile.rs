//! Hostile `.pth` files against the worker's checkpoint reader (`pth.rs`):
//! every bad file must give an `Err` that says what is wrong and names the
//! file, in bounded memory and time, never a panic or an abort.
//!
//! Memory is measured two ways: a counting global allocator (this test binary
//! only) gives each case's peak of Rust heap on the calling thread, and the
//! process's peak RSS (`VmHWM`, reset through `/proc/self/clear_refs` before
//! each case) also covers what libtorch allocates. The allocator refuses
//! (aborts the binary) beyond `HARD_LIMIT`, so a regression fails loudly
//! instead of eating the machine. Cases run one at a time (`SERIAL`) so that
//! RSS peaks are not mixed up.
//!
//! The corpus in tests/fixtures/pth-hostile/ is made by
//! tests/make_hostile_pth.py; its README.md table lists each file and the
//! fragment its error must contain.
use proptest::prelude::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Cursor, Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use sweep_worker::pth;

// ------------------------------------------------------------- measurement

/// Rust heap bytes per case, on the reading thread.
const MAX_HEAP: usize = 64 << 20;
/// Peak RSS growth per case (Rust + libtorch).
const MAX_RSS: u64 = 64 << 20;
/// Time per case. The claim is "bounded, never hanging": the bounds that
/// measure the work are the memory ones above, so this one is generous
/// (a loaded, shared machine must not fail it).
const MAX_TIME: Duration = Duration::from_secs(30);
/// Beyond this the allocator refuses and the binary aborts.
const HARD_LIMIT: usize = 1 << 30;

struct Counting;
static TOTAL: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    let _ = LIVE.try_with(|c| {
        let v = c.get() + delta;
        c.set(v);
        let _ = PEAK.try_with(|p| {
            if v > p.get() {
                p.set(v)
            }
        });
    });
}

fn reserve(n: usize) -> bool {
    if TOTAL.fetch_add(n, Ordering::Relaxed) + n > HARD_LIMIT {
        TOTAL.fetch_sub(n, Ordering::Relaxed);
        return false;
    }
    true
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if !reserve(l.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc(l) };
        if p.is_null() {
            TOTAL.fetch_sub(l.size(), Ordering::Relaxed);
        } else {
            track(l.size() as isize);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        if !reserve(l.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc_zeroed(l) };
        if p.is_null() {
            TOTAL.fetch_sub(l.size(), Ordering::Relaxed);
        } else {
            track(l.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(p, l) };
        TOTAL.fetch_sub(l.size(), Ordering::Relaxed);
        track(-(l.size() as isize));
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if new > l.size() && !reserve(new - l.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded as is.
        let q = unsafe { System.realloc(p, l, new) };
        if q.is_null() {
            if new > l.size() {
                TOTAL.fetch_sub(new - l.size(), Ordering::Relaxed);
            }
        } else {
            if new < l.size() {
                TOTAL.fetch_sub(l.size() - new, Ordering::Relaxed);
            }
            track(new as isize - l.size() as isize);
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn serial() -> std::sync::MutexGuard<'static, ()> {
    crate::memory_lock()
}

fn status_kb(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = s
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    line.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("bad {line}"))
}

#[derive(Debug, Clone, Copy, Default)]
struct Cost {
    heap: usize,
    rss: u64,
    time: Duration,
}

impl Cost {
    fn max(self, o: Cost) -> Cost {
        Cost {
            heap: self.heap.max(o.heap),
            rss: self.rss.max(o.rss),
            time: self.time.max(o.time),
        }
    }
}

/// Runs `f` (which must not panic) and measures its peak heap, peak RSS growth and time.
fn measure<R>(f: impl FnOnce() -> R) -> (R, Cost) {
    std::fs::write("/proc/self/clear_refs", "5")
        .expect("cannot reset the peak RSS through /proc/self/clear_refs");
    let rss0 = status_kb("VmRSS:");
    let start = LIVE.with(|c| c.get());
    PEAK.with(|c| c.set(start));
    let t0 = Instant::now();
    let r = catch_unwind(AssertUnwindSafe(f));
    let time = t0.elapsed();
    let heap = (PEAK.with(|c| c.get()) - start).max(0) as usize;
    let rss = status_kb("VmHWM:").saturating_sub(rss0) * 1024;
    let r = r.unwrap_or_else(|_| panic!("the reader panicked"));
    (r, Cost { heap, rss, time })
}

fn check_bounds(what: &str, c: Cost) {
    assert!(
        c.heap < MAX_HEAP,
        "{what}: {} MiB of Rust heap",
        c.heap >> 20
    );
    assert!(
        c.rss < MAX_RSS,
        "{what}: peak RSS grew by {} MiB",
        c.rss >> 20
    );
    assert!(c.time < MAX_TIME, "{what}: took {:?}", c.time);
}

// ------------------------------------------------------------- file makers

/// A torch.save-like zip archive: archive/data.pkl and archive/data/<key>.
fn torch_zip(pkl: &[u8], storages: &[(&str, &[u8])]) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let o =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    z.start_file("archive/data.pkl", o).unwrap();
    z.write_all(pkl).unwrap();
    for (k, v) in storages {
        z.start_file(format!("archive/data/{k}"), o).unwrap();
        z.write_all(v).unwrap();
    }
    z.finish().unwrap().into_inner()
}

/// The entries of a zip archive, in order.
fn unzip(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut z = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
    (0..z.len())
        .map(|i| {
            let mut f = z.by_index(i).unwrap();
            let mut v = Vec::new();
            f.read_to_end(&mut v).unwrap();
            (f.name().to_string(), v)
        })
        .collect()
}

fn rezip(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let o =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (n, v) in entries {
        z.start_file(n.as_str(), o).unwrap();
        z.write_all(v).unwrap();
    }
    z.finish().unwrap().into_inner()
}

fn binunicode(s: &[u8]) -> Vec<u8> {
    let mut v = vec![b'X'];
    v.extend((s.len() as u32).to_le_bytes());
    v.extend(s);
    v
}

/// `_rebuild_tensor_v2(storage(key, FloatStorage), 0, (n,), (1,), False, OrderedDict())`.
fn float_tensor(key: &str, n: u8) -> Vec<u8> {
    let mut v = b"ctorch._utils\n_rebuild_tensor_v2\n((".to_vec();
    v.extend(binunicode(b"storage"));
    v.extend(b"ctorch\nFloatStorage\n");
    v.extend(binunicode(key.as_bytes()));
    v.extend(binunicode(b"cpu"));
    v.extend([
        b'K', n, b't', b'Q', b'K', 0, b'K', n, 0x85, b'K', 1, 0x85, 0x89,
    ]);
    v.extend(b"ccollections\nOrderedDict\n)Rt");
    v.push(b'R');
    v
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/pth-hostile")
        .canonicalize()
        .expect("tests/fixtures/pth-hostile")
}

// ------------------------------------------------------------- the bomb

/// The bug this file started from: a list that appends a memo-get of itself,
/// 64 times. With deep-copying memo gets that is 2^64 elements (the original
/// 472-byte file made `sweep predict` allocate until it aborted).
#[test]
fn memo_doubling_bomb_is_refused_in_bounded_memory() {
    let _s = serial();
    let mut p = vec![0x80, 2, b']'];
    for _ in 0..64 {
        p.extend_from_slice(&[b'q', 0, b'h', 0, b'a']);
    }
    p.push(b'.');
    let bytes = torch_zip(&p, &[]);
    assert!(bytes.len() < 500, "{} bytes", bytes.len());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bomb.pth");
    std::fs::write(&file, &bytes).unwrap();
    let (r, cost) = measure(|| pth::read(&file).map(|v| v.len()));
    eprintln!("bomb ({} bytes): {cost:?}", bytes.len());
    let e = r.unwrap_err();
    assert!(
        matches!(e.reason, pth::PthError::In { ref source, .. }
            if matches!(**source, pth::PthError::AtPickleByte { ref source, .. }
                if matches!(**source, pth::PthError::Limit(_)))),
        "a limit refusal inside data.pkl: {e:?}"
    );
    let e = e.to_string();
    assert!(e.contains("bomb.pth") && e.contains("levels deep"), "{e}");
    check_bounds("bomb", cost);
    assert!(
        cost.heap < 1 << 20,
        "the bomb still took {} KiB",
        cost.heap >> 10
    );
}

/// The same bomb through `sweep-worker predict` (what `sweep predict` runs):
/// a clear error and exit code 2 instead of allocating until it aborts.
#[test]
fn predict_refuses_the_bomb() {
    let file = fixtures().join("memo-bomb.pth");
    let job = sweep_protocol::PredictJob {
        backbone: "resnet18".into(),
        head: sweep_protocol::Head::Original,
        weights: file.clone(),
        classes: vec!["a".into(), "b".into()],
        named_classes: true,
        image_size: 32,
        paths: vec![],
    };
    let t0 = Instant::now();
    // The worker's own peak RSS, from a small Python parent's wait4: the
    // kernel folds the parent's high-water mark into a child's ru_maxrss at
    // exec, so measuring from this test process (which has run 2 GB models
    // in-process) would count those (seen in CI); Python's few MiB do not matter.
    let python = std::env::var("SWEEP_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(python)
        .args([
            "-c",
            "import os, subprocess, sys\n\
             p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)\n\
             _, status, usage = os.wait4(p.pid, 0)\n\
             print(usage.ru_maxrss, os.waitstatus_to_exitcode(status))",
            env!("CARGO_BIN_EXE_sweep-worker"),
            "predict",
            "--job",
            &serde_json::to_string(&job).unwrap(),
        ])
        .output()
        .unwrap();
    let took = t0.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    let line = String::from_utf8_lossy(&out.stdout);
    let mut fields = line.split_whitespace().map(|x| x.parse::<i64>().unwrap());
    let (maxrss_kib, code) = (fields.next().unwrap(), fields.next().unwrap());
    eprintln!(
        "predict on the bomb: {took:?}, peak RSS of the worker {} MiB",
        maxrss_kib >> 10
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("memo-bomb.pth") && err.contains("levels deep"),
        "{err}"
    );
    // The worker's own libtorch and resnet18 take a few hundred MiB; the bomb adds nothing.
    assert!(
        maxrss_kib < 1 << 20,
        "the worker peaked at {} MiB",
        maxrss_kib >> 10
    );
    assert!(took < Duration::from_secs(60), "{took:?}");
}

/// Names and values shared through the memo are shared, not copied: one
/// 1 MB name set 40 000 times (40 GB if each SETITEM copied it) gives one
/// tensor, last value wins.
#[test]
fn memo_shared_names_are_not_copied() {
    let _s = serial();
    let name = vec![b'n'; 1 << 20];
    let mut p = b"\x80\x02}(".to_vec();
    p.extend(binunicode(&name));
    p.extend([b'q', 1]);
    p.extend(float_tensor("0", 2));
    p.extend([b'q', 2]);
    for _ in 0..40_000 {
        p.extend([b'h', 1, b'h', 2]);
    }
    p.extend(b"u.");
    let bytes = torch_zip(&p, &[("0", &[0, 0, 128, 63, 0, 0, 0, 64])]);
    let (r, cost) = measure(|| pth::read_bytes(&bytes, "names.pth"));
    eprintln!("shared names: {cost:?}");
    let v = r.unwrap();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].0.len(), 1 << 20);
    assert_eq!(Vec::<f32>::try_from(&v[0].1).unwrap(), vec![1.0, 2.0]);
    check_bounds("shared names", cost);
}

/// A tensor whose storage key is 60 000 bytes long (about the most a zip
/// entry name allows), shared through the memo by 70 000 names: one view is
/// made and every name gets it (the reader recognises the shared reference
/// by address, so the key is not hashed once per name either — 4 GB of
/// hashing; that cost is not asserted here, as a time limit tight enough to
/// catch it would fail on a loaded machine).
#[test]
fn a_long_shared_storage_key_makes_one_tensor_for_every_name() {
    let _s = serial();
    let key = "k".repeat(60_000);
    let mut p = b"\x80\x02}(".to_vec();
    p.extend(binunicode(b"w"));
    p.extend(float_tensor(&key, 2));
    p.extend([b'q', 1]);
    for i in 0..70_000 {
        p.extend(binunicode(format!("n{i}").as_bytes()));
        p.extend([b'h', 1]);
    }
    p.extend(b"u.");
    let bytes = torch_zip(&p, &[(&key, &[0, 0, 128, 63, 0, 0, 0, 64])]);
    let (r, cost) = measure(|| pth::read_bytes(&bytes, "key.pth"));
    eprintln!("long shared key: {cost:?}");
    let v = r.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v.len(), 70_001);
    assert_eq!(Vec::<f32>::try_from(&v[70_000].1).unwrap(), vec![1.0, 2.0]);
    check_bounds("long shared key", cost);
    let shared = v[0].1.data_ptr();
    assert!(
        v.iter().all(|(_, t)| t.data_ptr() == shared),
        "every name holds the one tensor, not a copy"
    );
}

/// The legacy format's storage-key list naming one 1 MB key 100 000 times
/// through the memo: neither copied per entry (100 GB) nor hashed per entry.
#[test]
fn a_legacy_key_list_of_one_shared_long_key_is_refused() {
    let _s = serial();
    let key = "k".repeat(1 << 20);
    let mut f =
        b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.\x80\x02M\xe9\x03.\x80\x02}."
            .to_vec();
    f.extend(b"\x80\x02}");
    f.extend(binunicode(b"w"));
    f.extend(float_tensor(&key, 2));
    f.extend(b"s.\x80\x02](");
    f.extend(binunicode(key.as_bytes()));
    f.extend([b'q', 1]);
    for _ in 0..100_000 {
        f.extend([b'h', 1]);
    }
    f.extend(b"e.");
    f.extend(2u64.to_le_bytes());
    f.extend([0, 0, 128, 63, 0, 0, 0, 64]);
    let (r, cost) = measure(|| pth::read_bytes(&f, "keys.pth").map(|v| v.len()));
    eprintln!("legacy shared keys: {cost:?}");
    let e = r.unwrap_err().to_string();
    assert!(e.contains("is listed twice"), "{e}");
    check_bounds("legacy shared keys", cost);
}

// ------------------------------------------------------------- the corpus

/// (file, expected fragment) from the README table.
fn corpus() -> Vec<(String, String)> {
    let readme = std::fs::read_to_string(fixtures().join("README.md"))
        .expect("tests/fixtures/pth-hostile/README.md");
    readme
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cols: Vec<&str> = l.split('|').map(str::trim).collect();
            (
                cols[1].trim_matches('`').to_string(),
                cols[2].trim_matches('`').to_string(),
            )
        })
        .collect()
}

#[test]
fn every_hostile_fixture_is_a_clear_error() {
    let _s = serial();
    let cases = corpus();
    assert!(
        cases.len() >= 50,
        "only {} cases in the README",
        cases.len()
    );
    let on_disk: Vec<String> = std::fs::read_dir(fixtures())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".pth"))
        .collect();
    for n in &on_disk {
        assert!(
            cases.iter().any(|(c, _)| c == n),
            "{n} is not documented in the README"
        );
    }
    let mut worst = Cost::default();
    for (file, fragment) in &cases {
        let path = fixtures().join(file);
        assert!(path.is_file(), "{file} is in the README but not on disk");
        let (r, cost) = measure(|| pth::read(&path).map(|v| v.len()));
        let e = match r {
            Ok(n) => panic!("{file}: read {n} tensors instead of failing"),
            Err(e) => e.to_string(),
        };
        eprintln!("{file}: {cost:?}\n    {e}");
        assert!(
            e.contains(file.as_str()),
            "{file}: the error does not name the file: {e}"
        );
        assert!(
            e.contains(fragment.as_str()),
            "{file}: expected {fragment:?} in: {e}"
        );
        assert!(!e.contains("panicked"), "{e}");
        check_bounds(file, cost);
        worst = worst.max(cost);
    }
    eprintln!("worst over {} hostile files: {worst:?}", cases.len());
}

#[test]
fn the_valid_seeds_load_exactly() {
    let _s = serial();
    let want: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("valid/small.json")).unwrap(),
    )
    .unwrap();
    let want = want.as_object().unwrap();
    for f in ["small.pth", "small.legacy.pth"] {
        let got = pth::read(&fixtures().join("valid").join(f)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.len(), want.len(), "{f}: tensor count");
        for (name, t) in &got {
            let w = want
                .get(name)
                .unwrap_or_else(|| panic!("{f}: unexpected {name}"));
            let shape: Vec<i64> = serde_json::from_value(w["shape"].clone()).unwrap();
            let values: Vec<f64> = serde_json::from_value(w["values"].clone()).unwrap();
            assert_eq!(t.size(), shape, "{f}: {name} shape");
            let got: Vec<f64> =
                Vec::try_from(&t.to_kind(tch::Kind::Double).flatten(0, -1)).unwrap();
            assert_eq!(got, values, "{f}: {name} values");
        }
        assert!(
            got.iter().any(|(n, _)| n == "view.expanded"),
            "{f}: the stride-0 view is exercised"
        );
    }
}

// ------------------------------------------------------------- fuzzing

/// One fuzz case: no panic, bounded memory and time; Ok or Err both fine.
fn fuzz_one(bytes: &[u8]) -> Result<(), TestCaseError> {
    let _s = serial();
    let (r, cost) = measure(|| pth::read_bytes(bytes, "fuzz.pth").map(|v| v.len()));
    if let Err(e) = &r {
        let e = e.to_string();
        prop_assert!(
            e.starts_with("cannot read fuzz.pth as a PyTorch checkpoint: "),
            "{}",
            e
        );
    }
    prop_assert!(cost.heap < MAX_HEAP, "{} MiB of heap", cost.heap >> 20);
    prop_assert!(
        cost.rss < MAX_RSS,
        "peak RSS grew by {} MiB",
        cost.rss >> 20
    );
    prop_assert!(cost.time < MAX_TIME, "took {:?}", cost.time);
    Ok(())
}

fn seeds() -> (Vec<u8>, Vec<u8>) {
    let dir = fixtures().join("valid");
    (
        std::fs::read(dir.join("small.pth")).unwrap(),
        std::fs::read(dir.join("small.legacy.pth")).unwrap(),
    )
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    Duplicate(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<usize>();
    prop_oneof![
        (at, 1u8..).prop_map(|(a, b)| Mutation::Flip(a, b)),
        // Interesting bytes: opcodes, lengths, 0xff runs.
        (
            at,
            prop::sample::select(vec![
                0u8, 1, 0x7f, 0x80, 0xff, b'h', b'q', b'(', b'.', b'R', b'K', b'J', b'X'
            ])
        )
            .prop_map(|(a, b)| Mutation::Set(a, b)),
        at.prop_map(Mutation::Truncate),
        (at, prop::collection::vec(any::<u8>(), 1..16)).prop_map(|(a, v)| Mutation::Insert(a, v)),
        (at, 1usize..32).prop_map(|(a, n)| Mutation::Remove(a, n)),
        (at, 1usize..64).prop_map(|(a, n)| Mutation::Duplicate(a, n)),
    ]
}

fn mutate(mut v: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        if v.is_empty() {
            break;
        }
        let len = v.len();
        match m {
            Mutation::Flip(a, b) => v[a % len] ^= b,
            Mutation::Set(a, b) => v[a % len] = *b,
            Mutation::Truncate(a) => v.truncate(a % len),
            Mutation::Insert(a, bytes) => {
                let at = a % (len + 1);
                v.splice(at..at, bytes.iter().copied());
            }
            Mutation::Remove(a, n) => {
                let at = a % len;
                v.drain(at..(at + n).min(len));
            }
            Mutation::Duplicate(a, n) => {
                let at = a % len;
                let chunk: Vec<u8> = v[at..(at + n).min(len)].to_vec();
                v.splice(at..at, chunk);
            }
        }
    }
    v
}

/// Pickle opcodes with arguments, for the structured fuzzer.
fn pickle_op() -> impl Strategy<Value = Vec<u8>> {
    let name = prop::sample::select(vec!["storage", "0", "1", "cpu", "w", "b"]);
    let global = prop::sample::select(vec![
        "ctorch._utils\n_rebuild_tensor_v2\n",
        "ctorch._utils\n_rebuild_parameter\n",
        "ctorch\nFloatStorage\n",
        "ctorch\nHalfStorage\n",
        "ctorch\nLongStorage\n",
        "ccollections\nOrderedDict\n",
        "cos\nsystem\n",
    ]);
    let single = prop::sample::select(vec![
        b"}".to_vec(),
        b"]".to_vec(),
        b")".to_vec(),
        b"(".to_vec(),
        b"N".to_vec(),
        vec![0x89],
        b"t".to_vec(),
        vec![0x85],
        vec![0x86],
        vec![0x87],
        b"a".to_vec(),
        b"e".to_vec(),
        b"s".to_vec(),
        b"u".to_vec(),
        b"b".to_vec(),
        b"Q".to_vec(),
        b"R".to_vec(),
        vec![0x94],
    ]);
    prop_oneof![
        4 => single,
        2 => any::<u8>().prop_map(|k| vec![b'K', k]),
        1 => any::<i32>().prop_map(|k| {
            let mut v = vec![b'J'];
            v.extend(k.to_le_bytes());
            v
        }),
        1 => any::<i64>().prop_map(|k| {
            let mut v = vec![0x8a, 8];
            v.extend(k.to_le_bytes());
            v
        }),
        2 => name.prop_map(|n| binunicode(n.as_bytes())),
        2 => global.prop_map(|g| g.as_bytes().to_vec()),
        1 => (0u8..4).prop_map(|i| vec![b'q', i]),
        2 => (0u8..4).prop_map(|i| vec![b'h', i]),
        1 => any::<u8>().prop_map(|b| vec![b]),
    ]
}

/// One tensor of the view fuzzer: storage, offset, sizes, strides.
#[derive(Debug, Clone)]
struct ViewCase {
    storage: usize,
    offset: i64,
    size: Vec<i64>,
    stride: Vec<i64>,
}

fn interesting(small: Vec<i64>, big: Vec<i64>) -> impl Strategy<Value = i64> {
    prop_oneof![6 => prop::sample::select(small), 1 => prop::sample::select(big)]
}

fn view_case() -> impl Strategy<Value = ViewCase> {
    let big = vec![-1, 1 << 20, 1 << 31, 1 << 40, 1 << 62, i64::MAX];
    let size = interesting(vec![0, 1, 1, 2, 2, 3, 5, 8], big.clone());
    let stride = interesting(vec![0, 1, 1, 2, 3, 5, 8, 40], big.clone());
    (
        0usize..2,
        interesting(vec![0, 0, 1, 2, 5, 39], big),
        0usize..5,
        prop::collection::vec((size, stride), 0..5),
        0u8..20,
    )
        .prop_map(|(storage, offset, _, dims, odd)| {
            let (size, mut stride): (Vec<i64>, Vec<i64>) = dims.into_iter().unzip();
            if odd == 0 {
                stride.push(1);
            }
            ViewCase {
                storage,
                offset,
                size,
                stride,
            }
        })
}

/// (torch storage type, element size) of the fuzzed storages.
const KINDS: [(&str, usize); 4] = [
    ("FloatStorage", 4),
    ("LongStorage", 8),
    ("ByteStorage", 1),
    ("HalfStorage", 2),
];

fn int_op(v: i64) -> Vec<u8> {
    let mut o = vec![0x8a, 8];
    o.extend(v.to_le_bytes());
    o
}

/// The pickle of a state_dict t0, t1, … of these views.
fn views_pickle(cases: &[ViewCase], kinds: [usize; 2]) -> Vec<u8> {
    let mut p = b"\x80\x02}(".to_vec();
    for (i, c) in cases.iter().enumerate() {
        p.extend(binunicode(format!("t{i}").as_bytes()));
        p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n((");
        p.extend(binunicode(b"storage"));
        p.extend(format!("ctorch\n{}\n", KINDS[kinds[c.storage]].0).as_bytes());
        p.extend(binunicode(c.storage.to_string().as_bytes()));
        p.extend(binunicode(b"cpu"));
        p.extend(b"K\x00tQ");
        p.extend(int_op(c.offset));
        for dims in [&c.size, &c.stride] {
            p.push(b'(');
            for &d in dims.iter() {
                p.extend(int_op(d));
            }
            p.push(b't');
        }
        p.extend(b"\x89ccollections\nOrderedDict\n)RtR");
    }
    p.extend(b"u.");
    p
}

/// The spec, independently of the reader: the bytes of the contiguous tensor
/// if the view is acceptable, None if it must be refused.
fn expected_bytes(c: &ViewCase, elem: usize, storage_len: usize) -> Option<u128> {
    if !storage_len.is_multiple_of(elem) || c.size.len() != c.stride.len() || c.size.len() > 64 {
        return None;
    }
    if c.offset < 0 || c.size.iter().chain(&c.stride).any(|&x| x < 0) {
        return None;
    }
    let mut nonzero: u128 = elem as u128;
    for &s in &c.size {
        nonzero = nonzero.checked_mul((s as u128).max(1))?;
    }
    if nonzero > i64::MAX as u128 {
        return None;
    }
    if c.size.contains(&0) {
        return Some(0);
    }
    let last: i128 = c.offset as i128
        + c.size
            .iter()
            .zip(&c.stride)
            .map(|(&s, &st)| (s as i128 - 1) * st as i128)
            .sum::<i128>();
    if last >= (storage_len / elem) as i128 {
        return None;
    }
    Some(c.size.iter().map(|&s| s as u128).product::<u128>() * elem as u128)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random views (sizes, strides, offsets: zero, stride 0, overflowing,
    /// negative, past the end) on two storages of random kinds and lengths.
    /// The reader must accept exactly the views the spec allows
    /// (`expected_bytes`) and then give exactly the elements
    /// `storage[offset + Σ index·stride]`; refuse the others.
    #[test]
    fn random_tensor_views_match_the_spec(
        cases in prop::collection::vec(view_case(), 1..4),
        kinds in [0usize..4, 0usize..4],
        lens in [0usize..48, 0usize..48],
        ragged in 0u8..12,
    ) {
        let mut storages: Vec<Vec<u8>> = (0..2).map(|s| (0..lens[s] * KINDS[kinds[s]].1).map(|i| (i * 7 + 3) as u8).collect()).collect();
        if ragged == 0 {
            storages[0].push(1);
        }
        let bytes = torch_zip(&views_pickle(&cases, kinds), &[("0", &storages[0]), ("1", &storages[1])]);
        let want: Option<Vec<u128>> = cases.iter().map(|c| expected_bytes(c, KINDS[kinds[c.storage]].1, storages[c.storage].len())).collect();
        // Views beyond their storage's bytes share one allowance (distinct views only).
        let want = want.filter(|b| {
            let mut seen = std::collections::HashSet::new();
            let total: u128 = cases.iter().zip(b).filter(|(c, _)| seen.insert((c.storage, c.offset, c.size.clone(), c.stride.clone()))).map(|(_, b)| *b).sum();
            let used: std::collections::HashSet<usize> = cases.iter().map(|c| c.storage).collect();
            total <= used.iter().map(|&s| storages[s].len() as u128).sum::<u128>() + (16 << 20)
        });
        let _s = serial();
        let (r, cost) = measure(|| pth::read_bytes(&bytes, "views.pth"));
        prop_assert!(cost.heap < MAX_HEAP && cost.rss < MAX_RSS && cost.time < MAX_TIME, "{:?}", cost);
        match (r, want) {
            (Err(e), None) => prop_assert!(e.to_string().contains("views.pth"), "{}", e),
            (Err(e), Some(_)) => prop_assert!(false, "refused a valid view: {}", e),
            (Ok(_), None) => prop_assert!(false, "accepted an invalid view"),
            (Ok(got), Some(_)) => {
                prop_assert_eq!(got.len(), cases.len());
                for (i, ((name, t), c)) in got.iter().zip(&cases).enumerate() {
                    prop_assert_eq!(name, &format!("t{i}"));
                    prop_assert_eq!(t.size(), c.size.clone());
                    let elem = KINDS[kinds[c.storage]].1;
                    let numel: i64 = c.size.iter().product();
                    if numel == 0 || numel > 1 << 20 {
                        continue;
                    }
                    let mut out = vec![0u8; numel as usize * elem];
                    t.f_copy_data_u8(&mut out, numel as usize).unwrap();
                    let st = &storages[c.storage];
                    let mut index = vec![0i64; c.size.len()];
                    for k in 0..numel as usize {
                        let at = (c.offset + index.iter().zip(&c.stride).map(|(i, s)| i * s).sum::<i64>()) as usize * elem;
                        prop_assert_eq!(&out[k * elem..(k + 1) * elem], &st[at..at + elem], "element {} of t{}", k, name);
                        for d in (0..index.len()).rev() {
                            index[d] += 1;
                            if index[d] < c.size[d] {
                                break;
                            }
                            index[d] = 0;
                        }
                    }
                }
            }
        }
    }

    /// Arbitrary bytes, as a file, behind a zip signature and behind a pickle header.
    #[test]
    fn arbitrary_bytes_never_hurt(data in prop::collection::vec(any::<u8>(), 0..1024), prefix in 0usize..3) {
        let mut v = [&b""[..], b"PK\x03\x04", b"\x80\x02"][prefix].to_vec();
        v.extend(data);
        fuzz_one(&v)?;
    }

    /// The real zip file, its bytes mutated (mostly stopped by the zip layer
    /// and its CRCs), and its data.pkl mutated then re-zipped with correct
    /// CRCs (reaching the pickle machine and the tensor checks).
    #[test]
    fn mutated_real_zip_files_never_hurt(muts in prop::collection::vec(mutation(), 1..6), inner in any::<bool>()) {
        let (zip, _) = seeds();
        let v = if inner {
            let mut entries = unzip(&zip);
            let pkl = entries.iter_mut().find(|(n, _)| n.ends_with("data.pkl")).unwrap();
            pkl.1 = mutate(std::mem::take(&mut pkl.1), &muts);
            rezip(&entries)
        } else {
            mutate(zip, &muts)
        };
        fuzz_one(&v)?;
    }

    /// The real legacy-format file, mutated (no CRC: every byte counts).
    #[test]
    fn mutated_real_legacy_files_never_hurt(muts in prop::collection::vec(mutation(), 1..6)) {
        let (_, legacy) = seeds();
        fuzz_one(&mutate(legacy, &muts))?;
    }

    /// Random sequences of the opcodes torch.save uses, with tensor-ish
    /// arguments, as the data.pkl of an archive with two storages.
    #[test]
    fn random_pickles_never_hurt(ops in prop::collection::vec(pickle_op(), 0..80)) {
        let mut p = vec![0x80, 2];
        p.extend(ops.concat());
        p.push(b'.');
        let s0: Vec<u8> = (0..64).collect();
        fuzz_one(&torch_zip(&p, &[("0", &s0), ("1", &s0[..6])]))?;
    }
}
