//! `[resources] keep` and `keep_precision`: what a finished trial leaves on
//! disk, shared by the spec (which parses them), the coordinator (which applies
//! them) and `sweep gc`.
/// A setting written as one of a fixed set of strings: `NAMES` (in the
/// order error messages list them), `parse` and `as_str` from one table.
macro_rules! named_values {
    ($ty:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            pub const NAMES: &'static [&'static str] = &[$($name),+];

            pub fn parse(s: &str) -> Option<$ty> {
                match s {
                    $($name => Some($ty::$variant),)+
                    _ => None,
                }
            }

            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name,)+
                }
            }
        }
    };
}

/// `[resources] keep`: what stays on disk once a trial is done. A running or
/// failed trial keeps everything (it may resume); a pruned trial keeps
/// nothing but with `all` (it is never promoted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Keep {
    /// `best.safetensors` only: what `sweep predict` needs.
    #[default]
    Best,
    /// `best.safetensors` and `last.safetensors` (the final epoch's weights).
    BestLast,
    /// Everything, the training state for an exact resume included.
    All,
}

named_values!(Keep { Best => "best", BestLast => "best+last", All => "all" });

/// `[resources] keep_precision`: the precision of the weights files
/// (`best.safetensors`, and `last.safetensors` where `keep` keeps it) once a
/// trial is done. `half` rewrites their float32 tensors as float16 (half the
/// bytes; `sweep predict` widens them back to float32 on load); a trial that
/// may still resume is never touched, and the training state stays float32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeepPrecision {
    /// As trained: float32.
    #[default]
    Full,
    /// float16 (integer tensors unchanged; a file holding a value beyond
    /// float16's range stays float32, with a warning).
    Half,
}

named_values!(KeepPrecision { Full => "full", Half => "half" });
