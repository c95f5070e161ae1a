//! CUDA autocast (float16 mixed precision) around a closure, as
//! `torch.autocast("cuda")` in Python: through `cxx/autocast.cpp`, which calls
//! libtorch's current functions. tch's own `tch::autocast` calls the ones
//! PyTorch 2.11 deprecates, each call printing a warning into the trial's log.

// SAFETY: plain functions of `cxx/autocast.cpp` with these C signatures; they
// take no pointers, throw nothing and touch only thread-local flags and
// libtorch's autocast cast cache.
unsafe extern "C" {
    safe fn sweep_autocast_cuda_is_enabled() -> bool;
    safe fn sweep_autocast_cuda_set_enabled(enabled: bool);
    safe fn sweep_autocast_increment_nesting() -> i32;
    safe fn sweep_autocast_decrement_nesting() -> i32;
    safe fn sweep_autocast_clear_cache();
}

/// Whether CUDA autocast is on in this thread.
pub fn cuda_enabled() -> bool {
    sweep_autocast_cuda_is_enabled()
}

/// Restores the thread's autocast state when the closure returns or unwinds.
struct Restore {
    prev: bool,
}

impl Drop for Restore {
    fn drop(&mut self) {
        if sweep_autocast_decrement_nesting() == 0 {
            sweep_autocast_clear_cache();
        }
        sweep_autocast_cuda_set_enabled(self.prev);
    }
}

/// Runs `f` with CUDA autocast on when `enabled` (on any machine: the flag
/// only changes what CUDA operations do), else just runs it.
pub fn cuda<T>(enabled: bool, f: impl FnOnce() -> T) -> T {
    if !enabled {
        return f();
    }
    let _restore = Restore {
        prev: cuda_enabled(),
    };
    sweep_autocast_cuda_set_enabled(true);
    sweep_autocast_increment_nesting();
    f()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek};

    /// Runs `f` with this process's stderr (fd 2) going to a file, and
    /// returns what was written to it.
    fn stderr_of(f: impl FnOnce()) -> String {
        let mut file = tempfile::tempfile().unwrap();
        // SAFETY: plain dup/dup2 on fd 2 and a file this function owns.
        let saved = unsafe { libc::dup(2) };
        assert!(saved >= 0);
        unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&file), 2) };
        f();
        unsafe {
            libc::dup2(saved, 2);
            libc::close(saved);
        }
        let mut out = String::new();
        file.rewind().unwrap();
        file.read_to_string(&mut out).unwrap();
        out
    }

    /// The flag is on inside and restored after (also after a panic), it is
    /// the flag libtorch's deprecated accessor reads, and turning it on and
    /// off prints nothing, where tch's path (the deprecated accessors)
    /// prints a deprecation warning per call.
    #[test]
    fn cuda_autocast_is_on_inside_restored_after_and_quiet() {
        assert!(!cuda_enabled());
        let quiet = stderr_of(|| {
            assert!(cuda(true, cuda_enabled));
            assert!(!cuda(false, cuda_enabled));
            assert!(cuda(true, || cuda(true, cuda_enabled)));
        });
        assert!(!cuda_enabled());
        assert!(!quiet.contains("deprecated"), "{quiet}");
        let caught = std::panic::catch_unwind(|| cuda(true, || panic!("inside")));
        assert!(caught.is_err());
        assert!(!cuda_enabled(), "restored after a panic");
        // The flag libtorch's deprecated accessor reads, which tch's
        // `autocast` calls on a CUDA machine: printing a warning each time.
        let mut seen = None;
        let loud = stderr_of(|| {
            seen = Some(cuda(true, || unsafe {
                torch_sys::at_autocast_is_enabled()
            }))
        });
        assert_eq!(seen, Some(1));
        assert!(loud.contains("deprecated"), "{loud}");
    }
}
