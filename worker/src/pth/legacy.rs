//! The legacy format of `torch.save` (before torch 1.6): five pickles in a row,
//! then every storage as an element count and its bytes. Reads from memory.
use super::pickle::{Machine, V};
use super::*;

/// The magic number that starts a legacy checkpoint (a pickled long).
pub(super) const LEGACY_MAGIC: [u8; 10] =
    [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

/// Legacy format: pickles of (magic, protocol, sys info, the object, storage
/// keys), then each storage as a little-endian u64 element count and its bytes.
pub(super) fn read_legacy(bytes: &[u8]) -> Result<Vec<(String, Tensor)>, PthError> {
    let mut m = Machine::new(bytes);
    let no_magic = || {
        PthError::Container(
            "neither a zip archive nor a legacy torch.save file (no magic number)".into(),
        )
    };
    m.load().map_err(|_| no_magic())?;
    if !bytes[..m.pos]
        .windows(LEGACY_MAGIC.len())
        .any(|w| w == LEGACY_MAGIC)
    {
        return Err(no_magic());
    }
    let _protocol = m.load()?;
    let _sys = m.load()?;
    let root = m.load()?;
    let keys = storage_keys(&mut m)?;
    let refs = m.state_dict(&root)?;
    let storages = storage_bytes(&m, &keys, bytes)?;
    let sizes: HashMap<String, u64> = storages
        .iter()
        .map(|(k, v)| (k.to_string(), v.len() as u64))
        .collect();
    let plan = plan(refs, &sizes)?;
    let mut made: Vec<Option<Tensor>> = (0..plan.views.len()).map(|_| None).collect();
    for (key, ids) in plan.by_storage() {
        let kind = plan.views[ids[0]].kind;
        let bytes = storages[key.as_str()];
        let base = Tensor::f_from_data_size(
            bytes,
            &[(bytes.len() / kind.elt_size_in_bytes()) as i64],
            kind,
        )
        .map_err(|source| PthError::Torch {
            key: short(&key),
            source,
        })?;
        plan.materialise(&key, &ids, &base, &mut made)?;
    }
    plan.finish(made)
}

/// The fifth pickle: the list of storage keys, in the order their bytes follow.
fn storage_keys(m: &mut Machine) -> Result<Vec<Rc<str>>, PthError> {
    // The keys stay shared strings: a long key listed many times through the
    // memo is neither copied nor hashed more than once.
    match m.load()? {
        V::List(i) => m
            .seq(i)
            .iter()
            .map(|k| {
                if let V::Str(s) = k {
                    Ok(Rc::clone(s))
                } else {
                    Err(PthError::WrongType("a storage key is not a string".into()))
                }
            })
            .collect(),
        _ => Err(PthError::WrongType(
            "legacy checkpoint without a storage key list".into(),
        )),
    }
}

/// Each listed storage's bytes, after the pickles: a little-endian u64
/// element count, then the elements. Every key once, described by a pickle,
/// and inside the file.
fn storage_bytes<'b>(
    m: &Machine,
    keys: &'b [Rc<str>],
    bytes: &'b [u8],
) -> Result<HashMap<&'b str, &'b [u8]>, PthError> {
    let mut pos = m.pos;
    let mut storages: HashMap<&str, &[u8]> = HashMap::new();
    let mut listed: HashSet<*const u8> = HashSet::new();
    for k in keys {
        if !listed.insert(k.as_ptr()) || storages.contains_key(k.as_ref()) {
            return Err(PthError::Container(format!(
                "storage {} is listed twice",
                short(k)
            )));
        }
        let header = bytes.get(pos..pos.saturating_add(8)).ok_or_else(|| {
            PthError::Container(format!("storage {}: truncated header", short(k)))
        })?;
        let numel = u64::from_le_bytes(
            header
                .try_into()
                .map_err(|_| PthError::Container("truncated header".into()))?,
        );
        pos += 8;
        let kind = m.storages.get(k.as_ref()).ok_or_else(|| {
            PthError::Container(format!(
                "storage {} is listed but never described",
                short(k)
            ))
        })?;
        let len = numel
            .checked_mul(kind.elt_size_in_bytes() as u64)
            .filter(|&l| l <= (bytes.len() - pos) as u64)
            .ok_or_else(|| {
                PthError::Container(format!(
                    "storage {} declares {numel} {kind:?} elements but only {} bytes follow",
                    short(k),
                    bytes.len() - pos
                ))
            })? as usize;
        storages.insert(k, &bytes[pos..pos + len]);
        pos += len;
    }
    Ok(storages)
}
