//! Reads PyTorch `torch.save`d state_dicts — the files torchvision downloads —
//! without Python: the zip format (torch ≥ 1.6) and the legacy format (older
//! checkpoints such as the original VGG weights).
//!
//! A minimal pickle machine: just the opcodes `torch.save` emits for a dict of
//! tensors, `torch._utils._rebuild_tensor_v2` / `_rebuild_parameter` rebuilt as
//! tensor references, `collections.OrderedDict` as a dict, anything else an
//! error. It never executes code and never panics on malformed input: every
//! read is bounds-checked and every failure is an `Err` naming the file.
//! (libtorch's own `_load_parameters` rejects these files: it expects the
//! mobile format, hence this module.)
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use tch::{Kind, Tensor};

#[derive(Debug, Clone)]
enum V {
    None,
    Bool,
    Int(i64),
    Float,
    Str(String),
    Bytes,
    Tuple(Vec<V>),
    List(Vec<V>),
    Dict(Vec<(V, V)>),
    Global(String, String),
    /// persistent id: ('storage', type, key, location, numel[, view])
    Storage {
        kind: Kind,
        key: String,
    },
    Tensor(TensorRef),
    Mark,
    Other,
}

#[derive(Debug, Clone)]
struct TensorRef {
    kind: Kind,
    key: String,
    offset: i64,
    size: Vec<i64>,
    stride: Vec<i64>,
}

fn storage_kind(name: &str) -> Option<Kind> {
    Some(match name {
        "FloatStorage" => Kind::Float,
        "DoubleStorage" => Kind::Double,
        "HalfStorage" => Kind::Half,
        "BFloat16Storage" => Kind::BFloat16,
        "LongStorage" => Kind::Int64,
        "IntStorage" => Kind::Int,
        "ShortStorage" => Kind::Int16,
        "CharStorage" => Kind::Int8,
        "ByteStorage" => Kind::Uint8,
        "BoolStorage" => Kind::Bool,
        _ => return None,
    })
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<V>,
    memo: HashMap<u32, V>,
}

impl<'a> Machine<'a> {
    fn new(data: &'a [u8]) -> Self {
        Machine { data, pos: 0, stack: Vec::new(), memo: HashMap::new() }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len()).ok_or("truncated pickle")?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn line(&mut self) -> Result<String, String> {
        let rest = self.data.get(self.pos..).ok_or("truncated pickle")?;
        let n = rest.iter().position(|&b| b == b'\n').ok_or("unterminated GLOBAL")?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }
    fn pop(&mut self) -> Result<V, String> {
        self.stack.pop().ok_or_else(|| "pickle stack underflow".to_string())
    }
    fn pop_mark(&mut self) -> Result<Vec<V>, String> {
        let at = self.stack.iter().rposition(|v| matches!(v, V::Mark)).ok_or("pickle MARK missing")?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Ok(items)
    }
    fn top(&mut self) -> Result<&mut V, String> {
        self.stack.last_mut().ok_or_else(|| "pickle stack underflow".to_string())
    }

    /// Runs to STOP and returns the result.
    fn run(&mut self) -> Result<V, String> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?;
                }
                0x95 => {
                    self.take(8)?;
                }
                b'.' => return self.pop(),
                b'}' => self.stack.push(V::Dict(vec![])),
                b']' => self.stack.push(V::List(vec![])),
                b')' => self.stack.push(V::Tuple(vec![])),
                b'(' => self.stack.push(V::Mark),
                b'N' => self.stack.push(V::None),
                0x88 => self.stack.push(V::Bool),
                0x89 => self.stack.push(V::Bool),
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(V::Int(v as i64))
                }
                b'M' => {
                    let v = self.u16()?;
                    self.stack.push(V::Int(v as i64))
                }
                b'J' => {
                    let v = self.u32()? as i32;
                    self.stack.push(V::Int(v as i64))
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    if n > 8 {
                        // Only the legacy magic number is this long; keep it as an opaque value.
                        self.stack.push(V::Other);
                    } else {
                        let mut buf = [if b.last().is_some_and(|x| x & 0x80 != 0) { 0xff } else { 0 }; 8];
                        buf[..n].copy_from_slice(b);
                        self.stack.push(V::Int(i64::from_le_bytes(buf)));
                    }
                }
                b'G' => {
                    let b = self.take(8)?;
                    let _ = b;
                    self.stack.push(V::Float);
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let s = String::from_utf8_lossy(self.take(n)?).into_owned();
                    self.stack.push(V::Str(s));
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let s = String::from_utf8_lossy(self.take(n)?).into_owned();
                    self.stack.push(V::Str(s));
                }
                b'U' => {
                    let n = self.u8()? as usize;
                    let s = String::from_utf8_lossy(self.take(n)?).into_owned();
                    self.stack.push(V::Str(s));
                }
                b'T' => {
                    let n = self.u32()? as usize;
                    let s = String::from_utf8_lossy(self.take(n)?).into_owned();
                    self.stack.push(V::Str(s));
                }
                b'C' => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?.to_vec();
                    let _ = b;
                    self.stack.push(V::Bytes);
                }
                b'B' => {
                    let n = self.u32()? as usize;
                    let b = self.take(n)?.to_vec();
                    let _ = b;
                    self.stack.push(V::Bytes);
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack.push(V::Global(module, name));
                }
                b'q' => {
                    let i = self.u8()? as u32;
                    let v = self.top()?.clone();
                    self.memo.insert(i, v);
                }
                b'r' => {
                    let i = self.u32()?;
                    let v = self.top()?.clone();
                    self.memo.insert(i, v);
                }
                0x94 => {
                    let i = self.memo.len() as u32;
                    let v = self.top()?.clone();
                    self.memo.insert(i, v);
                }
                b'h' => {
                    let i = self.u8()? as u32;
                    let v = self.memo.get(&i).cloned().ok_or("pickle memo miss")?;
                    self.stack.push(v);
                }
                b'j' => {
                    let i = self.u32()?;
                    let v = self.memo.get(&i).cloned().ok_or("pickle memo miss")?;
                    self.stack.push(v);
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(V::Tuple(items));
                }
                0x85 => {
                    let a = self.pop()?;
                    self.stack.push(V::Tuple(vec![a]));
                }
                0x86 => {
                    let b = self.pop()?;
                    let a = self.pop()?;
                    self.stack.push(V::Tuple(vec![a, b]));
                }
                0x87 => {
                    let c = self.pop()?;
                    let b = self.pop()?;
                    let a = self.pop()?;
                    self.stack.push(V::Tuple(vec![a, b, c]));
                }
                b'a' => {
                    let v = self.pop()?;
                    if let V::List(l) = self.top()? {
                        l.push(v);
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    if let V::List(l) = self.top()? {
                        l.extend(items);
                    }
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    if let V::Dict(d) = self.top()? {
                        d.push((k, v));
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let mut it = items.into_iter();
                    let mut pairs = Vec::new();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        pairs.push((k, v));
                    }
                    if let V::Dict(d) = self.top()? {
                        d.extend(pairs);
                    }
                }
                b'b' => {
                    // BUILD: OrderedDict's _metadata and similar state; not needed.
                    self.pop()?;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    self.stack.push(persistent(pid)?);
                }
                b'R' => {
                    let args = self.pop()?;
                    let f = self.pop()?;
                    self.stack.push(reduce(f, args)?);
                }
                other => return Err(format!("unsupported pickle opcode 0x{other:02x} at byte {}", self.pos - 1)),
            }
        }
    }
}

fn persistent(pid: V) -> Result<V, String> {
    let V::Tuple(items) = pid else { return Err("unexpected persistent id".into()) };
    match items.as_slice() {
        [V::Str(tag), V::Global(_, ty), key, ..] if tag == "storage" => {
            let kind = storage_kind(ty).ok_or_else(|| format!("unsupported storage type {ty}"))?;
            let key = match key {
                V::Str(s) => s.clone(),
                V::Int(i) => i.to_string(),
                _ => return Err("unexpected storage key".into()),
            };
            Ok(V::Storage { kind, key })
        }
        _ => Err("unexpected persistent id".into()),
    }
}

fn ints(v: &V) -> Result<Vec<i64>, String> {
    match v {
        V::Tuple(items) | V::List(items) => items.iter().map(|x| if let V::Int(i) = x { Ok(*i) } else { Err("expected an int".to_string()) }).collect(),
        _ => Err("expected a tuple of ints".into()),
    }
}

fn reduce(f: V, args: V) -> Result<V, String> {
    let V::Global(module, name) = f else { return Ok(V::Other) };
    let V::Tuple(args) = args else { return Err("REDUCE args are not a tuple".into()) };
    match (module.as_str(), name.as_str()) {
        ("collections", "OrderedDict") => Ok(V::Dict(vec![])),
        ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => match args.as_slice() {
            [V::Storage { kind, key }, V::Int(offset), size, stride, ..] => {
                Ok(V::Tensor(TensorRef { kind: *kind, key: key.clone(), offset: *offset, size: ints(size)?, stride: ints(stride)? }))
            }
            _ => Err("unexpected _rebuild_tensor_v2 arguments".into()),
        },
        ("torch._utils", "_rebuild_parameter") => args.into_iter().next().ok_or_else(|| "empty _rebuild_parameter".to_string()),
        _ => Ok(V::Other),
    }
}

fn dict_of_tensors(v: V) -> Result<Vec<(String, TensorRef)>, String> {
    let V::Dict(pairs) = v else { return Err("the checkpoint is not a state_dict (a dict of tensors)".into()) };
    let mut out = Vec::new();
    for (k, v) in pairs {
        match (k, v) {
            (V::Str(k), V::Tensor(t)) => out.push((k, t)),
            // A checkpoint wrapping the state_dict, e.g. {"state_dict": {...}} or {"model": {...}}.
            (V::Str(_), d @ V::Dict(_)) if out.is_empty() => return dict_of_tensors(d),
            _ => {}
        }
    }
    if out.is_empty() {
        return Err("the checkpoint holds no tensors".into());
    }
    Ok(out)
}

fn materialise(t: &TensorRef, storage: &[u8]) -> Result<Tensor, String> {
    let elem = t.kind.elt_size_in_bytes();
    let numel = storage.len() / elem.max(1);
    // Every element the view can reach must lie inside the storage.
    let mut max = t.offset;
    for (s, st) in t.size.iter().zip(&t.stride) {
        if *s < 0 || *st < 0 {
            return Err("negative size or stride".into());
        }
        if *s > 0 {
            max = max.checked_add((s - 1).checked_mul(*st).ok_or("size overflow")?).ok_or("size overflow")?;
        }
    }
    if t.size.contains(&0) {
        return Ok(Tensor::zeros(t.size.as_slice(), (t.kind, tch::Device::Cpu)));
    }
    if t.offset < 0 || max as usize >= numel {
        return Err(format!("tensor view out of its storage ({max} ≥ {numel})"));
    }
    let base = Tensor::f_from_data_size(&storage[..numel * elem], &[numel as i64], t.kind).map_err(|e| e.to_string())?;
    base.f_as_strided(t.size.as_slice(), t.stride.as_slice(), t.offset).and_then(|x| x.f_contiguous()).map_err(|e| e.to_string())
}

/// Reads a `torch.save`d state_dict (zip or legacy format).
pub fn read(path: &Path) -> Result<Vec<(String, Tensor)>, String> {
    let err = |m: String| format!("cannot read {} as a PyTorch checkpoint: {m}", path.display());
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    if bytes.starts_with(b"PK") { read_zip(&bytes).map_err(err) } else { read_legacy(&bytes).map_err(err) }
}

fn read_zip(bytes: &[u8]) -> Result<Vec<(String, Tensor)>, String> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| e.to_string())?;
    let pkl_name = (0..zip.len())
        .filter_map(|i| zip.by_index(i).ok().map(|f| f.name().to_string()))
        .find(|n| n.ends_with("data.pkl"))
        .ok_or("no data.pkl in the archive")?;
    let prefix = pkl_name.trim_end_matches("data.pkl").to_string();
    let mut pkl = Vec::new();
    zip.by_name(&pkl_name).map_err(|e| e.to_string())?.read_to_end(&mut pkl).map_err(|e| e.to_string())?;
    let root = Machine::new(&pkl).run()?;
    let refs = dict_of_tensors(root)?;
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    let mut out = Vec::new();
    for (name, t) in refs {
        if !storages.contains_key(&t.key) {
            let mut buf = Vec::new();
            zip.by_name(&format!("{prefix}data/{}", t.key)).map_err(|e| format!("storage {}: {e}", t.key))?.read_to_end(&mut buf).map_err(|e| e.to_string())?;
            storages.insert(t.key.clone(), buf);
        }
        let storage = storages.get(&t.key).ok_or("storage vanished")?;
        out.push((name.clone(), materialise(&t, storage).map_err(|e| format!("{name}: {e}"))?));
    }
    Ok(out)
}

/// Legacy format: pickles of (magic, protocol, sys info, the object, storage
/// keys), then each storage as a little-endian u64 element count and its bytes.
fn read_legacy(bytes: &[u8]) -> Result<Vec<(String, Tensor)>, String> {
    let mut pos = 0;
    let next = |pos: &mut usize| -> Result<V, String> {
        let mut m = Machine::new(bytes.get(*pos..).ok_or("truncated file")?);
        let v = m.run()?;
        *pos += m.pos;
        Ok(v)
    };
    let _magic = next(&mut pos)?;
    let _protocol = next(&mut pos)?;
    let _sys = next(&mut pos)?;
    let root = next(&mut pos)?;
    let keys = match next(&mut pos)? {
        V::List(k) => k.into_iter().filter_map(|k| if let V::Str(s) = k { Some(s) } else { None }).collect::<Vec<_>>(),
        _ => return Err("legacy checkpoint without a storage key list".into()),
    };
    let refs = dict_of_tensors(root)?;
    let kinds: HashMap<&str, Kind> = refs.iter().map(|(_, t)| (t.key.as_str(), t.kind)).collect();
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    for k in &keys {
        let n = bytes.get(pos..pos + 8).ok_or("truncated storage header")?;
        let mut a = [0u8; 8];
        a.copy_from_slice(n);
        let numel = u64::from_le_bytes(a) as usize;
        pos += 8;
        let elem = kinds.get(k.as_str()).map(|k| k.elt_size_in_bytes()).unwrap_or(4);
        let len = numel.checked_mul(elem).ok_or("storage size overflow")?;
        let data = bytes.get(pos..pos.checked_add(len).ok_or("overflow")?).ok_or("truncated storage")?;
        storages.insert(k.clone(), data.to_vec());
        pos += len;
    }
    let mut out = Vec::new();
    for (name, t) in refs {
        let storage = storages.get(&t.key).ok_or_else(|| format!("{name}: storage {} missing", t.key))?;
        out.push((name.clone(), materialise(&t, storage).map_err(|e| format!("{name}: {e}"))?));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_never_panics() {
        let mut seed = 1u64;
        for len in 0..300usize {
            let mut v = Vec::with_capacity(len);
            for _ in 0..len {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                v.push((seed >> 33) as u8);
            }
            let _ = Machine::new(&v).run();
            let _ = read_legacy(&v);
            let mut z = b"PK".to_vec();
            z.extend(&v);
            let _ = read_zip(&z);
        }
    }
}
