//! (work in progress) the memo-doubling bomb.
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Cursor, Write};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static TOTAL: AtomicUsize = AtomicUsize::new(0);
const HARD_LIMIT: usize = 1 << 30;
thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}
fn track(d: isize) {
    let _ = LIVE.try_with(|c| {
        let v = c.get() + d;
        c.set(v);
        let _ = PEAK.try_with(|p| if v > p.get() { p.set(v) });
    });
}
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if TOTAL.fetch_add(l.size(), Ordering::Relaxed) + l.size() > HARD_LIMIT {
            TOTAL.fetch_sub(l.size(), Ordering::Relaxed);
            return std::ptr::null_mut();
        }
        let p = unsafe { System.alloc(l) };
        if p.is_null() { TOTAL.fetch_sub(l.size(), Ordering::Relaxed); } else { track(l.size() as isize); }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        TOTAL.fetch_sub(l.size(), Ordering::Relaxed);
        track(-(l.size() as isize));
    }
}
#[global_allocator]
static A: Counting = Counting;

fn zip_of(pkl: &[u8]) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let o = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    z.start_file("archive/data.pkl", o).unwrap();
    z.write_all(pkl).unwrap();
    z.finish().unwrap().into_inner()
}

#[test]
fn memo_doubling_bomb() {
    let mut p = vec![0x80, 2, b']'];
    for _ in 0..64 { p.extend_from_slice(&[b'q', 0, b'h', 0, b'a']); }
    p.push(b'.');
    let z = zip_of(&p);
    eprintln!("bomb: {} bytes", z.len());
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bomb.pth");
    std::fs::write(&f, &z).unwrap();
    let start = LIVE.with(|c| c.get());
    PEAK.with(|c| c.set(start));
    let r = sweep_worker::pth::read(&f);
    let peak = PEAK.with(|c| c.get()) - start;
    eprintln!("peak {peak}");
    assert!(r.is_err());
    assert!(peak < 64 << 20);
}
