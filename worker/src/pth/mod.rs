//! Reads PyTorch `torch.save`d state_dicts — the files torchvision downloads —
//! without Python: the zip format (torch ≥ 1.6) and the legacy format (older
//! checkpoints such as the original VGG weights).
//!
//! A minimal pickle machine: just the opcodes `torch.save` emits for a dict of
//! tensors, `torch._utils._rebuild_tensor_v2` / `_rebuild_parameter` rebuilt as
//! tensor references, `collections.OrderedDict` as a dict, anything else an
//! error. It never executes code. (libtorch's own `_load_parameters` rejects
//! these files: it expects the mobile format, hence this module.)
//!
//! Checkpoints come from the internet, so everything a file can make the
//! reader do is bounded, and every bad file is an `Err` naming the file and
//! what is wrong — never a panic, an abort or an unbounded allocation:
//!
//! - pickle objects live in an arena and are shared by index: memo gets and
//!   self-references never copy anything (a memo-get is O(1)), and names or
//!   keys shared through the memo are hashed once, not once per use;
//! - nesting is limited to [`MAX_DEPTH`] levels, and what one pickle may build
//!   to [`MAX_PICKLE_MEMORY`] bytes (a fixed cost per opcode plus string bytes);
//! - `data.pkl` may be at most [`MAX_PICKLE_BYTES`]; every zip entry must
//!   decompress to exactly its declared size, and all entries together to at
//!   most the archive's own size plus [`ZIP_SLACK`] (compression bombs and
//!   overlapping entries);
//! - every tensor view (sizes, strides, storage offset) must lie inside the
//!   bytes its storage really has, at most [`MAX_DIMS`] dimensions, no negative
//!   size/stride/offset, no overflow; views that read more bytes than their
//!   storage holds (stride 0 / overlapping strides) may add at most
//!   [`EXPANSION_ALLOWANCE`] bytes in all.
//!
//! Memory: the returned tensors (zip storages are read straight into them)
//! and, for the legacy format only, the file itself; a hostile file cannot
//!
//! [`pickle`] runs the pickle, [`zip`] and [`legacy`] read the two formats;
//! this file checks the tensor views against their storages ([`Plan`]) and
//! names every refusal ([`PthError`]).
mod legacy;
mod pickle;
mod zip;

use std::collections::{HashMap, HashSet};
use std::io::{Read, Seek};
use std::path::Path;
use std::rc::Rc;
use tch::{Kind, Tensor};

/// Largest `data.pkl` accepted (torchvision's are a few tens of KB).
pub const MAX_PICKLE_BYTES: u64 = 16 << 20;
/// What one pickle may build, in (over-)estimated bytes: [`OP_COST`] per opcode
/// plus the bytes of every string. About 20 000 tensors' worth.
pub const MAX_PICKLE_MEMORY: usize = 24 << 20;
/// Charged per executed opcode: an upper bound of what one opcode can allocate
/// (a stack slot, an arena object or a memo entry, with vector growth).
const OP_COST: usize = 128;
/// Deepest nesting of tuples, lists and dicts (state_dicts need about 4).
pub const MAX_DEPTH: u32 = 64;
/// Deepest wrapping of the state_dict in other dicts (`{"model": {...}}`).
const MAX_WRAPPING: u32 = 8;
/// Most dimensions of one tensor.
pub const MAX_DIMS: usize = 64;
/// How far the entries of a zip archive may expand beyond the archive's size.
pub const ZIP_SLACK: u64 = 16 << 20;
/// Bytes that tensor views may hold beyond the bytes of their storages, in all.
pub const EXPANSION_ALLOWANCE: u64 = 16 << 20;

/// Why a checkpoint was refused, by kind; [`ReadError`] adds the file's name.
/// The texts are the ones the worker reports (and tests match), so a variant
/// that carries a `String` carries the whole sentence.
#[derive(Debug, thiserror::Error)]
pub enum PthError {
    /// The file could not be opened or read.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Not a zip archive nor a legacy file, or a damaged or missing part of one
    /// (an entry, a storage, a header).
    #[error("{0}")]
    Container(String),
    /// More than a bound allows: pickle size or memory, nesting, dimensions,
    /// decompressed or expanded bytes (bombs).
    #[error("{0}")]
    Limit(String),
    /// A pickle opcode the minimal machine does not run.
    #[error("unsupported pickle opcode 0x{0:02x}")]
    UnsupportedOpcode(u8),
    /// Something `torch.save` may write but this reader does not take
    /// (a storage type, a byte order).
    #[error("{0}")]
    Unsupported(String),
    /// A pickle cut short or breaking the pickle rules (stack, marks, memo).
    #[error("{0}")]
    Pickle(String),
    /// A value of the wrong type where a state_dict has another.
    #[error("{0}")]
    WrongType(String),
    /// A tensor view or storage that does not fit the bytes it has.
    #[error("{0}")]
    Tensor(String),
    /// libtorch could not make a storage's tensor.
    #[error("storage {key}: {source}")]
    Torch { key: String, source: tch::TchError },
    /// The refusal at a byte of a pickle.
    #[error("{source} (pickle byte {at})")]
    AtPickleByte { at: usize, source: Box<PthError> },
    /// The refusal in a named part of the file (a zip entry, a tensor).
    #[error("{place}: {source}")]
    In {
        place: String,
        source: Box<PthError>,
    },
}

impl PthError {
    /// `self`, said to have happened in `place`.
    fn in_(self, place: impl Into<String>) -> PthError {
        PthError::In {
            place: place.into(),
            source: Box::new(self),
        }
    }
}

/// A checkpoint that cannot be read: the file and why ([`PthError`]).
#[derive(Debug, thiserror::Error)]
#[error("cannot read {file} as a PyTorch checkpoint: {reason}")]
pub struct ReadError {
    /// The path (or the name given to [`read_bytes`]).
    pub file: String,
    #[source]
    pub reason: PthError,
}

use legacy::read_legacy;
use pickle::{Named, TensorRef};
use zip::read_zip;

fn mib(n: u64) -> String {
    format!("{} MiB", n >> 20)
}

/// A name or key from the file, cut for an error message (they can be huge).
fn short(s: &str) -> String {
    match s.char_indices().nth(60) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_string(),
    }
}

/// The distinct tensor views of a state_dict, checked against the byte sizes
/// of their storages before anything is allocated.
struct Plan {
    names: Vec<String>,
    /// For each name, its view in `views`.
    view_of: Vec<usize>,
    views: Vec<TensorRef>,
}

fn plan(refs: Named, storage_bytes: &HashMap<String, u64>) -> Result<Plan, PthError> {
    // A tensor shared through the memo is recognised by address, so that its
    // (possibly long) storage key is hashed once, not once per name.
    let mut by_addr: HashMap<*const TensorRef, usize> = HashMap::new();
    let mut ids: HashMap<Rc<TensorRef>, usize> = HashMap::new();
    let mut p = Plan {
        names: Vec::new(),
        view_of: Vec::new(),
        views: Vec::new(),
    };
    let mut view_bytes: u64 = 0;
    // (`refs` stays alive throughout, so an address is never reused.)
    for (name, t) in &refs {
        let id = match by_addr.get(&Rc::as_ptr(t)) {
            Some(&id) => id,
            None => {
                let id = match ids.get(t) {
                    Some(&id) => id,
                    None => {
                        let bytes = *storage_bytes.get(&t.key).ok_or_else(|| {
                            PthError::Container(format!("storage {} is missing", short(&t.key)))
                                .in_(short(name))
                        })?;
                        view_bytes = view_bytes
                            .saturating_add(check_view(t, bytes).map_err(|e| e.in_(short(name)))?);
                        p.views.push((**t).clone());
                        ids.insert(Rc::clone(t), p.views.len() - 1);
                        p.views.len() - 1
                    }
                };
                by_addr.insert(Rc::as_ptr(t), id);
                id
            }
        };
        p.names.push(name.clone());
        p.view_of.push(id);
    }
    let used: HashSet<&str> = p.views.iter().map(|v| v.key.as_str()).collect();
    let storage_total: u64 = used.iter().filter_map(|k| storage_bytes.get(*k)).sum();
    if view_bytes > storage_total.saturating_add(EXPANSION_ALLOWANCE) {
        return Err(PthError::Limit(format!(
            "the tensors claim {view_bytes} bytes from only {storage_total} bytes of storage (stride-0 or overlapping views beyond the {} allowance)",
            mib(EXPANSION_ALLOWANCE)
        )));
    }
    Ok(p)
}

/// Checks that the view `t` lies inside a storage of `bytes` bytes; returns
/// the bytes of the (contiguous) tensor it makes.
fn check_view(t: &TensorRef, bytes: u64) -> Result<u64, PthError> {
    let elem = t.kind.elt_size_in_bytes() as u64;
    if !bytes.is_multiple_of(elem) {
        return Err(PthError::Tensor(format!(
            "storage {} has {bytes} bytes, not a multiple of its {elem}-byte {:?} elements",
            short(&t.key),
            t.kind
        )));
    }
    let numel_storage = bytes / elem;
    if t.size.len() != t.stride.len() {
        return Err(PthError::Tensor(format!(
            "{} sizes but {} strides",
            t.size.len(),
            t.stride.len()
        )));
    }
    if t.offset < 0 || t.size.iter().any(|&s| s < 0) || t.stride.iter().any(|&s| s < 0) {
        return Err(PthError::Tensor(format!(
            "negative size, stride or storage offset (size {:?}, stride {:?}, offset {})",
            t.size, t.stride, t.offset
        )));
    }
    let overflow = || PthError::Tensor(format!("size {:?} overflows", t.size));
    // Even for an empty tensor the product of the other dimensions must be sane.
    let mut numel: u64 = 1;
    let mut nonzero: u64 = 1;
    for &s in &t.size {
        numel = numel.checked_mul(s as u64).ok_or_else(overflow)?;
        nonzero = nonzero
            .checked_mul((s as u64).max(1))
            .ok_or_else(overflow)?;
    }
    let out_bytes = numel.checked_mul(elem).ok_or_else(overflow)?;
    nonzero
        .checked_mul(elem)
        .filter(|&b| b <= i64::MAX as u64)
        .ok_or_else(overflow)?;
    if numel == 0 {
        return Ok(0);
    }
    // The last element the view reaches must lie inside the storage.
    let mut last = t.offset as u64;
    for (&s, &st) in t.size.iter().zip(&t.stride) {
        last = (s as u64 - 1)
            .checked_mul(st as u64)
            .and_then(|x| x.checked_add(last))
            .ok_or_else(|| PthError::Tensor(format!("stride {:?} overflows", t.stride)))?;
    }
    if last >= numel_storage {
        return Err(PthError::Tensor(format!(
            "view (size {:?}, stride {:?}, offset {}) reaches element {last} of a storage of {numel_storage} {:?} elements ({bytes} bytes)",
            t.size, t.stride, t.offset, t.kind
        )));
    }
    Ok(out_bytes)
}

impl Plan {
    /// Each storage key once, in order of first use, with the views on it.
    fn by_storage(&self) -> Vec<(String, Vec<usize>)> {
        let mut at: HashMap<&str, usize> = HashMap::new();
        let mut out: Vec<(String, Vec<usize>)> = Vec::new();
        for (id, v) in self.views.iter().enumerate() {
            let i = *at.entry(v.key.as_str()).or_insert_with(|| {
                out.push((v.key.clone(), Vec::new()));
                out.len() - 1
            });
            out[i].1.push(id);
        }
        out
    }

    /// Makes the views `ids` of storage `key` from `base`, the whole storage
    /// as a 1-d tensor.
    fn materialise(
        &self,
        key: &str,
        ids: &[usize],
        base: &Tensor,
        made: &mut [Option<Tensor>],
    ) -> Result<(), PthError> {
        for &id in ids {
            let v = &self.views[id];
            let t = if v.size.contains(&0) {
                Tensor::f_zeros(v.size.as_slice(), (v.kind, tch::Device::Cpu))
            } else {
                base.f_as_strided(v.size.as_slice(), v.stride.as_slice(), v.offset)
                    .and_then(|x| x.f_contiguous())
            };
            made[id] = Some(t.map_err(|source| PthError::Torch {
                key: short(key),
                source,
            })?);
        }
        Ok(())
    }

    fn finish(self, made: Vec<Option<Tensor>>) -> Result<Vec<(String, Tensor)>, PthError> {
        self.names
            .into_iter()
            .zip(self.view_of)
            .map(|(n, id)| match made.get(id).and_then(|t| t.as_ref()) {
                Some(t) => Ok((n, t.shallow_clone())),
                None => Err(PthError::Tensor("its storage was never read".into()).in_(short(&n))),
            })
            .collect()
    }
}

/// Reads a `torch.save`d state_dict (zip or legacy format).
pub fn read(path: &Path) -> Result<Vec<(String, Tensor)>, ReadError> {
    read_file(path).map_err(|reason| ReadError {
        file: path.display().to_string(),
        reason,
    })
}

fn read_file(path: &Path) -> Result<Vec<(String, Tensor)>, PthError> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let mut magic = [0u8; 2];
    let zip = file.read_exact(&mut magic).is_ok() && &magic == b"PK";
    if zip {
        file.rewind()?;
        read_zip(std::io::BufReader::new(file), len)
    } else {
        drop(file);
        read_legacy(&std::fs::read(path)?)
    }
}

/// [`read`] for a checkpoint already in memory; `name` is what errors call it.
pub fn read_bytes(bytes: &[u8], name: &str) -> Result<Vec<(String, Tensor)>, ReadError> {
    let r = if bytes.starts_with(b"PK") {
        read_zip(std::io::Cursor::new(bytes), bytes.len() as u64)
    } else {
        read_legacy(bytes)
    };
    r.map_err(|reason| ReadError {
        file: name.to_string(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::pickle::{Machine, V};
    use super::*;

    #[test]
    fn garbage_never_panics() {
        let mut seed = 1u64;
        for len in 0..300usize {
            let mut v = Vec::with_capacity(len);
            for _ in 0..len {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                v.push((seed >> 33) as u8);
            }
            let _ = Machine::new(&v).load();
            let _ = read_legacy(&v);
            let mut z = b"PK".to_vec();
            z.extend(&v);
            let _ = read_bytes(&z, "garbage");
        }
    }

    #[test]
    fn memo_gets_share_instead_of_copying() {
        // A list that appends itself 100 times: 2^100 elements if copied.
        let mut p = vec![0x80, 2, b']', b'q', 0];
        for _ in 0..100 {
            p.extend_from_slice(&[b'h', 0, b'a']);
        }
        p.push(b'.');
        let mut m = Machine::new(&p);
        let e = m.load().unwrap_err();
        assert!(e.to_string().contains("levels deep"), "{e}");
        assert!(
            matches!(&e, PthError::AtPickleByte { source, .. } if matches!(**source, PthError::Limit(_))),
            "{e:?}"
        );
        // Shallow sharing (a list holding one other list many times) is fine.
        let mut p = vec![0x80, 2, b']', b']', b'q', 0, b'a'];
        for _ in 0..1000 {
            p.extend_from_slice(&[b'h', 0, b'a']);
        }
        p.push(b'.');
        let mut m = Machine::new(&p);
        let V::List(i) = m.load().unwrap() else {
            panic!("not a list")
        };
        assert_eq!(m.seq(i).len(), 1001);
        assert!(m.objs.len() == 2);
    }
}
