//! `[resources] keep` and `keep_precision`: what a finished trial leaves on
//! disk, shared by the spec (which parses them), the coordinator (which applies
//! them) and `sweep gc` (whose `--keep` and `--keep-precision` take them
//! directly: `clap::ValueEnum`, the same names as in a sweep file).
//!
//! The variants' `#[value(help = None::<&str>)]` keeps their doc comments,
//! written for readers of the code, out of `sweep gc --help` and the shell
//! completions, which list the values bare.
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Keep {
    /// `best.safetensors` only: what `sweep predict` needs.
    #[default]
    #[value(name = "best", help = None::<&str>)]
    Best,
    /// `best.safetensors` and `last.safetensors` (the final epoch's weights).
    #[value(name = "best+last", help = None::<&str>)]
    BestLast,
    /// Everything, the training state for an exact resume included.
    #[value(name = "all", help = None::<&str>)]
    All,
}

named_values!(Keep { Best => "best", BestLast => "best+last", All => "all" });

/// `[resources] keep_precision`: the precision of the weights files
/// (`best.safetensors`, and `last.safetensors` where `keep` keeps it) once a
/// trial is done. `half` rewrites their float32 tensors as float16 (half the
/// bytes; `sweep predict` widens them back to float32 on load); a trial that
/// may still resume is never touched, and the training state stays float32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum KeepPrecision {
    /// As trained: float32.
    #[default]
    #[value(name = "full", help = None::<&str>)]
    Full,
    /// float16 (integer tensors unchanged; a file holding a value beyond
    /// float16's range stays float32, with a warning).
    #[value(name = "half", help = None::<&str>)]
    Half,
}

named_values!(KeepPrecision { Full => "full", Half => "half" });

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    /// The names `sweep gc` accepts (clap) are the names a sweep file uses
    /// (`NAMES`, `parse`, `as_str`), in the same order.
    fn same_names<T: ValueEnum + Copy + PartialEq + std::fmt::Debug>(
        names: &[&str],
        parse: fn(&str) -> Option<T>,
        as_str: fn(T) -> &'static str,
    ) {
        let cli: Vec<String> = T::value_variants()
            .iter()
            .map(|v| v.to_possible_value().unwrap().get_name().to_string())
            .collect();
        assert_eq!(cli, names);
        for v in T::value_variants() {
            let name = as_str(*v);
            assert_eq!(parse(name), Some(*v));
            assert_eq!(T::from_str(name, false), Ok(*v));
        }
    }

    #[test]
    fn cli_names_are_the_sweep_file_names() {
        same_names(Keep::NAMES, Keep::parse, Keep::as_str);
        same_names(
            KeepPrecision::NAMES,
            KeepPrecision::parse,
            KeepPrecision::as_str,
        );
    }
}
