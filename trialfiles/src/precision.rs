//! `[resources] keep_precision = "half"`: the weights a done trial keeps,
//! rewritten with every float32 tensor as float16 (half the bytes). Pure Rust
//! (the `safetensors` and `half` crates), so the coordinator stays
//! libtorch-free; `sweep predict` widens float16 back to float32 on load.
//!
//! Integer tensors (BatchNorm's `num_batches_tracked`, where a file has them)
//! and every other dtype are copied unchanged, and the file's `__metadata__`
//! is kept. A file without float32 tensors (already float16) is left alone,
//! so the rewrite can run again at every tidy step and `sweep gc`. A finite
//! value beyond float16's range (|x| > 65504) would become infinity: such a
//! file is left in float32 and the caller warns. The rewrite is atomic:
//! `NAME.half.tmp.safetensors` is written and fsynced, then renamed over the
//! original (and the folder fsynced), so a kill at any point leaves the old
//! or the new file; a leftover temporary is removed by `retention::apply`.
use half::f16;
use safetensors::tensor::{Metadata, TensorView};
use safetensors::{Dtype, SafeTensors};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// What [`halve_file`] did (or, dry, would do) to one file.
#[derive(Debug, Clone, PartialEq)]
pub enum Halving {
    /// Its float32 tensors are (would be) float16 now: the file's size before and after.
    Halved { before: u64, after: u64 },
    /// No float32 tensor in it (already float16): left alone.
    NothingToDo,
    /// `tensor` holds `value`, beyond float16's range: left in float32.
    OutOfRange { tensor: String, value: f32 },
}

/// The first finite value beyond float16's range stops the conversion.
#[derive(Debug, Clone, PartialEq)]
pub struct OutOfRange {
    pub index: usize,
    pub value: f32,
}

/// Little-endian float32 bytes → little-endian float16 bytes (round to
/// nearest even, as `torch.Tensor.half()` does). Infinities and NaN stay what
/// they are; a finite value that would round to infinity is an error.
pub fn f32_bytes_to_f16(data: &[u8]) -> Result<Vec<u8>, OutOfRange> {
    let mut out = Vec::with_capacity(data.len() / 2);
    for (index, c) in data.chunks_exact(4).enumerate() {
        let value = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        let h = f16::from_f32(value);
        if h.is_infinite() && value.is_finite() {
            return Err(OutOfRange { index, value });
        }
        out.extend_from_slice(&h.to_le_bytes());
    }
    Ok(out)
}

fn invalid(path: &Path, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{}: not a readable safetensors file ({what})",
            path.display()
        ),
    )
}

/// The header of a safetensors file, read without its tensor data.
pub fn read_header(path: &Path) -> io::Result<Metadata> {
    let mut f = std::fs::File::open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot read {}: {e}", path.display())))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(|e| invalid(path, e))?;
    let len = u64::from_le_bytes(len);
    // safetensors' own limit on a header.
    if len > 100_000_000 {
        return Err(invalid(path, format!("a header of {len} bytes")));
    }
    let mut header = vec![0u8; len as usize];
    f.read_exact(&mut header).map_err(|e| invalid(path, e))?;
    serde_json::from_slice::<Metadata>(&header).map_err(|e| invalid(path, e))
}

/// The floating-point dtypes of a safetensors file's tensors, by torch's
/// names, most common first (e.g. `["float16"]`); empty when it has none.
pub fn float_dtypes(path: &Path) -> io::Result<Vec<&'static str>> {
    let header = read_header(path)?;
    let mut counts: Vec<(&'static str, usize)> = Vec::new();
    for info in header.tensors().values() {
        let name = match info.dtype {
            Dtype::F16 => "float16",
            Dtype::BF16 => "bfloat16",
            Dtype::F32 => "float32",
            Dtype::F64 => "float64",
            _ => continue,
        };
        match counts.iter_mut().find(|(n, _)| *n == name) {
            Some((_, c)) => *c += 1,
            None => counts.push((name, 1)),
        }
    }
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    Ok(counts.into_iter().map(|(n, _)| n).collect())
}

/// The temporary a rewrite of `path` goes through (removed by `retention::apply` if a kill leaves it).
pub fn temp_path(path: &Path) -> PathBuf {
    let stem = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".safetensors"))
        .unwrap_or("weights");
    path.with_file_name(format!("{stem}.half.tmp.safetensors"))
}

/// What [`rewrite`] makes of a file's bytes.
enum Rewrite {
    /// The new file, every float32 tensor now float16.
    Bytes(Vec<u8>),
    /// No float32 tensor.
    NoFloat32,
    /// This tensor holds this value, beyond float16's range.
    OutOfRange(String, f32),
}

/// A tensor of the new file: name, dtype, shape, little-endian data.
type Part<'a> = (String, Dtype, Vec<usize>, std::borrow::Cow<'a, [u8]>);

/// The bytes of a safetensors file with every float32 tensor as float16 (other dtypes and the metadata as they are).
fn rewrite(path: &Path, buffer: &[u8]) -> io::Result<Rewrite> {
    let st = SafeTensors::deserialize(buffer).map_err(|e| invalid(path, format!("{e:?}")))?;
    let (_, header) =
        SafeTensors::read_metadata(buffer).map_err(|e| invalid(path, format!("{e:?}")))?;
    let tensors = st.tensors();
    if !tensors.iter().any(|(_, t)| t.dtype() == Dtype::F32) {
        return Ok(Rewrite::NoFloat32);
    }
    let mut parts: Vec<Part<'_>> = Vec::with_capacity(tensors.len());
    for (name, t) in &tensors {
        if t.dtype() == Dtype::F32 {
            match f32_bytes_to_f16(t.data()) {
                Ok(h) => parts.push((name.clone(), Dtype::F16, t.shape().to_vec(), h.into())),
                Err(o) => return Ok(Rewrite::OutOfRange(name.clone(), o.value)),
            }
        } else {
            parts.push((name.clone(), t.dtype(), t.shape().to_vec(), t.data().into()));
        }
    }
    let views = parts
        .iter()
        .map(|(n, d, s, data)| TensorView::new(*d, s.clone(), &data[..]).map(|v| (n.clone(), v)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(path, format!("{e:?}")))?;
    safetensors::serialize(views, header.metadata())
        .map(Rewrite::Bytes)
        .map_err(|e| invalid(path, format!("{e:?}")))
}

/// Rewrites the safetensors file `path` with its float32 tensors as float16
/// (see the module's documentation); `dry_run` computes the outcome and writes nothing.
pub fn halve_file(path: &Path, dry_run: bool) -> io::Result<Halving> {
    // The header alone says whether there is anything to do (a tidy step
    // runs this over every done trial at each start).
    if !read_header(path)?
        .tensors()
        .values()
        .any(|i| i.dtype == Dtype::F32)
    {
        return Ok(Halving::NothingToDo);
    }
    let buffer = std::fs::read(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot read {}: {e}", path.display())))?;
    let bytes = match rewrite(path, &buffer)? {
        Rewrite::Bytes(b) => b,
        Rewrite::NoFloat32 => return Ok(Halving::NothingToDo),
        Rewrite::OutOfRange(tensor, value) => return Ok(Halving::OutOfRange { tensor, value }),
    };
    let (before, after) = (buffer.len() as u64, bytes.len() as u64);
    drop(buffer);
    if !dry_run {
        write_atomically(path, &bytes)?;
    }
    Ok(Halving::Halved { before, after })
}

/// The float16 rewrite of `path`, atomically ([`crate::write_atomic`]).
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    crate::write_atomic(&temp_path(path), path, bytes).map_err(|e| {
        let hint = if e.raw_os_error() == Some(libc::ENOSPC) {
            "; the disk is full"
        } else {
            ""
        };
        io::Error::new(
            e.kind(),
            format!(
                "cannot rewrite {} as float16: {e}{hint}; it is left as it was",
                path.display()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A safetensors file of (name, dtype, shape, little-endian bytes), with metadata.
    fn write(
        path: &Path,
        tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)],
        meta: Option<HashMap<String, String>>,
    ) {
        let views: Vec<(String, TensorView<'_>)> = tensors
            .iter()
            .map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap()))
            .collect();
        safetensors::serialize_to_file(views, &meta, path).unwrap();
    }

    fn f32s(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn f16s(b: &[u8]) -> Vec<f32> {
        b.chunks_exact(2)
            .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect()
    }

    #[test]
    fn float32_values_round_to_the_nearest_float16() {
        let v = [
            0.0,
            -0.0,
            1.0,
            -2.5,
            0.1,
            65504.0,
            -65504.0,
            1e-8,
            f32::INFINITY,
            3.3,
        ];
        let h = f16s(&f32_bytes_to_f16(&f32s(&v)).unwrap());
        assert_eq!(
            h[..8],
            [
                0.0,
                -0.0,
                1.0,
                -2.5,
                f16::from_f32(0.1).to_f32(),
                65504.0,
                -65504.0,
                0.0
            ]
        );
        assert!((h[4] - 0.1).abs() < 1e-4, "{}", h[4]);
        assert_eq!(h[8], f32::INFINITY, "an infinity stays one");
        assert!((h[9] - 3.3).abs() < 2e-3);
        assert!(f16s(&f32_bytes_to_f16(&f32s(&[f32::NAN])).unwrap())[0].is_nan());
        // 65519 still rounds down to 65504; 65520 would round to infinity.
        assert_eq!(
            f16s(&f32_bytes_to_f16(&f32s(&[65519.0])).unwrap()),
            [65504.0]
        );
        assert_eq!(
            f32_bytes_to_f16(&f32s(&[1.0, 2.0, -65520.0])),
            Err(OutOfRange {
                index: 2,
                value: -65520.0
            })
        );
        assert_eq!(
            f32_bytes_to_f16(&f32s(&[1e6])),
            Err(OutOfRange {
                index: 0,
                value: 1e6
            })
        );
    }

    #[test]
    fn a_file_is_rewritten_in_float16_with_integers_and_metadata_untouched_and_only_once() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("best.safetensors");
        let w: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) / 37.0).collect();
        let ints: Vec<u8> = 7i64.to_le_bytes().to_vec();
        let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
        write(
            &p,
            &[
                ("fc.weight", Dtype::F32, vec![10, 100], f32s(&w)),
                ("bn1.num_batches_tracked", Dtype::I64, vec![], ints.clone()),
                ("already", Dtype::F16, vec![2], vec![0, 60, 0, 64]),
            ],
            Some(meta.clone()),
        );
        assert_eq!(float_dtypes(&p).unwrap(), ["float16", "float32"]);
        let before = std::fs::metadata(&p).unwrap().len();

        // A dry run says what it would save and writes nothing.
        let Halving::Halved { before: b, after } = halve_file(&p, true).unwrap() else {
            panic!()
        };
        assert_eq!(b, before);
        assert_eq!(std::fs::metadata(&p).unwrap().len(), before);

        assert_eq!(
            halve_file(&p, false).unwrap(),
            Halving::Halved { before, after }
        );
        assert_eq!(std::fs::metadata(&p).unwrap().len(), after);
        assert!(after < before - 1900, "{before} → {after}");
        let bytes = std::fs::read(&p).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let fc = st.tensor("fc.weight").unwrap();
        assert_eq!((fc.dtype(), fc.shape()), (Dtype::F16, &[10usize, 100][..]));
        for (a, b) in f16s(fc.data()).iter().zip(&w) {
            assert!((a - b).abs() <= b.abs() / 1024.0, "{a} vs {b}");
        }
        let n = st.tensor("bn1.num_batches_tracked").unwrap();
        assert_eq!((n.dtype(), n.data()), (Dtype::I64, &ints[..]));
        assert_eq!(st.tensor("already").unwrap().data(), [0, 60, 0, 64]);
        assert_eq!(
            SafeTensors::read_metadata(&bytes).unwrap().1.metadata(),
            &Some(meta)
        );
        assert_eq!(float_dtypes(&p).unwrap(), ["float16"]);
        assert!(!temp_path(&p).exists());

        // Idempotent: nothing left to convert, the file is not touched.
        let mtime = std::fs::metadata(&p).unwrap().modified().unwrap();
        assert_eq!(halve_file(&p, false).unwrap(), Halving::NothingToDo);
        assert_eq!(std::fs::metadata(&p).unwrap().modified().unwrap(), mtime);
    }

    #[test]
    fn a_value_beyond_float16_keeps_the_file_in_float32() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("best.safetensors");
        write(
            &p,
            &[
                ("a", Dtype::F32, vec![2], f32s(&[1.0, 2.0])),
                ("running_var", Dtype::F32, vec![3], f32s(&[1.0, 7e4, 2.0])),
            ],
            None,
        );
        let original = std::fs::read(&p).unwrap();
        assert_eq!(
            halve_file(&p, false).unwrap(),
            Halving::OutOfRange {
                tensor: "running_var".into(),
                value: 7e4
            }
        );
        assert_eq!(std::fs::read(&p).unwrap(), original);
        assert!(!temp_path(&p).exists());
    }

    #[test]
    fn a_broken_file_is_an_error_that_names_it_and_is_left_alone() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("best.safetensors");
        std::fs::write(&p, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json").unwrap();
        let e = halve_file(&p, false).unwrap_err();
        assert!(
            e.to_string().contains("best.safetensors")
                && e.to_string().contains("not a readable safetensors file"),
            "{e}"
        );
        assert_eq!(
            std::fs::read(&p).unwrap(),
            b"\x10\x00\x00\x00\x00\x00\x00\x00{not json"
        );
        assert_eq!(temp_path(&p), d.path().join("best.half.tmp.safetensors"));
    }
}
