//! The zip format of `torch.save` (torch >= 1.6): `data.pkl` and one entry per
//! storage, each decompressing to exactly its declared size, all of them to at
//! most the archive's size plus [`ZIP_SLACK`].
use super::pickle::Machine;
use super::*;
use std::io::{Read, Seek};

/// Reads one zip entry, which must decompress to exactly its declared size,
/// and that at most `cap` bytes.
pub(super) fn read_entry<R: Read + Seek>(
    zip: &mut ::zip::ZipArchive<R>,
    name: &str,
    cap: u64,
    what: &str,
) -> Result<Vec<u8>, PthError> {
    let mut f = zip
        .by_name(name)
        .map_err(|e| PthError::Container(format!("{}: {e}", short(name))))?;
    let declared = f.size();
    if declared > cap {
        return Err(PthError::Limit(format!(
            "{} declares {declared} bytes, more than {what} ({cap} bytes)",
            short(name)
        )));
    }
    let mut buf = vec![0u8; declared as usize];
    fill(&mut f, name, &mut buf)?;
    Ok(buf)
}

/// Fills `buf` from the zip entry `f`, which must hold exactly that many
/// bytes (reading to its end also checks its CRC).
pub(super) fn fill(f: &mut impl Read, name: &str, buf: &mut [u8]) -> Result<(), PthError> {
    let name = short(name);
    let mut got = 0;
    let mut extra = [0u8; 1];
    loop {
        let dst = if got < buf.len() {
            &mut buf[got..]
        } else {
            &mut extra[..]
        };
        match f.read(dst) {
            Ok(0) if got < buf.len() => {
                return Err(PthError::Container(format!(
                    "{name} holds {got} bytes, not the {} its zip header declares",
                    buf.len()
                )));
            }
            Ok(0) => return Ok(()),
            Ok(_) if got >= buf.len() => {
                return Err(PthError::Limit(format!(
                    "{name} holds more than the {} bytes its zip header declares",
                    buf.len()
                )));
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(PthError::Container(format!("{name}: {e}"))),
        }
    }
}

pub(super) fn read_zip<R: Read + Seek>(
    reader: R,
    file_len: u64,
) -> Result<Vec<(String, Tensor)>, PthError> {
    let mut zip = ::zip::ZipArchive::new(reader)
        .map_err(|e| PthError::Container(format!("not a readable zip archive: {e}")))?;
    let pkl_name = zip
        .file_names()
        .find(|n| n.ends_with("data.pkl"))
        .map(str::to_string)
        .ok_or_else(|| PthError::Container("no data.pkl in the archive".into()))?;
    let prefix = pkl_name[..pkl_name.len() - "data.pkl".len()].to_string();
    // All the archive's entries together may expand to its size plus ZIP_SLACK.
    let mut budget = file_len.saturating_add(ZIP_SLACK);
    if zip.file_names().any(|n| n == format!("{prefix}byteorder")) {
        let order = read_entry(&mut zip, &format!("{prefix}byteorder"), 16, "a byte order")?;
        budget -= order.len() as u64;
        if order != b"little" {
            return Err(PthError::Unsupported(format!(
                "byte order {:?} (only little-endian checkpoints are supported)",
                String::from_utf8_lossy(&order)
            )));
        }
    }
    let pkl = read_entry(
        &mut zip,
        &pkl_name,
        MAX_PICKLE_BYTES.min(budget),
        "the pickle limit",
    )?;
    budget -= pkl.len() as u64;
    let refs = {
        let mut m = Machine::new(&pkl);
        let root = m.load().map_err(|e| e.in_(pkl_name.as_str()))?;
        m.state_dict(&root)?
    };
    drop(pkl);
    let (sizes, total) = storage_sizes(&mut zip, &prefix, &refs)?;
    if total > budget {
        return Err(PthError::Limit(format!(
            "its storages declare {total} bytes, more than the archive's {file_len} bytes plus {} (a compression bomb or overlapping entries?)",
            mib(ZIP_SLACK)
        )));
    }
    let plan = plan(refs, &sizes)?;
    let mut made: Vec<Option<Tensor>> = (0..plan.views.len()).map(|_| None).collect();
    for (key, ids) in plan.by_storage() {
        // Read straight into the tensor: no second copy of the storage.
        let name = format!("{prefix}data/{key}");
        let kind = plan.views[ids[0]].kind;
        let bytes = sizes[&key] as usize;
        let base = Tensor::f_empty(
            [(bytes / kind.elt_size_in_bytes()) as i64],
            (kind, tch::Device::Cpu),
        )
        .map_err(|source| PthError::Torch {
            key: short(&key),
            source,
        })?;
        let mut f = zip
            .by_name(&name)
            .map_err(|e| PthError::Container(format!("{}: {e}", short(&name))))?;
        if bytes == 0 {
            fill(&mut f, &name, &mut [])?;
        } else {
            // SAFETY: `base` is a new contiguous CPU tensor of exactly `bytes`
            // bytes (the plan checked they are a whole number of elements),
            // owned here alone; the slice ends before `base` is used again.
            let dst = unsafe { std::slice::from_raw_parts_mut(base.data_ptr() as *mut u8, bytes) };
            fill(&mut f, &name, dst)?;
        }
        plan.materialise(&key, &ids, &base, &mut made)?;
    }
    plan.finish(made)
}

/// The declared size of every storage the state_dict uses (each looked up
/// once), and their total.
fn storage_sizes<R: Read + Seek>(
    zip: &mut ::zip::ZipArchive<R>,
    prefix: &str,
    refs: &Named,
) -> Result<(HashMap<String, u64>, u64), PthError> {
    let mut sizes: HashMap<String, u64> = HashMap::new();
    let mut total: u64 = 0;
    let mut seen: HashSet<*const TensorRef> = HashSet::new();
    for (_, t) in refs {
        if seen.insert(Rc::as_ptr(t)) && !sizes.contains_key(&t.key) {
            let name = format!("{prefix}data/{}", t.key);
            let n = zip
                .by_name(&name)
                .map_err(|e| {
                    PthError::Container(format!(
                        "storage {} ({}): {e}",
                        short(&t.key),
                        short(&name)
                    ))
                })?
                .size();
            total = total.saturating_add(n);
            sizes.insert(t.key.clone(), n);
        }
    }
    Ok((sizes, total))
}
