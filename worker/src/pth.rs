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
//! make it use more than about 64 MB beyond that.
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

/// A pickle value. Containers are indices into the machine's arena, so cloning
/// a value is O(1) whatever it holds.
#[derive(Debug, Clone)]
enum V {
    None,
    Bool,
    Int(i64),
    Float,
    Bytes,
    Other,
    Str(Rc<str>),
    Global(Rc<(String, String)>),
    /// persistent id: ('storage', type, key, location, numel[, view])
    Storage(Rc<(Kind, String)>),
    Tensor(Rc<TensorRef>),
    Tuple(usize),
    List(usize),
    Dict(usize),
}

#[derive(Debug)]
enum Items {
    Seq(Vec<V>),
    Map(Vec<(V, V)>),
}

#[derive(Debug)]
struct Obj {
    items: Items,
    depth: u32,
}

/// A state_dict's tensors by name, as references into their storages.
type Named = Vec<(String, Rc<TensorRef>)>;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<V>,
    /// Stack lengths at each MARK (Python's metastack); the last is the fence
    /// below which nothing may be popped.
    marks: Vec<usize>,
    memo: HashMap<u32, V>,
    objs: Vec<Obj>,
    used: usize,
    /// Every storage named by a persistent id: key → element kind.
    storages: HashMap<String, Kind>,
}

impl<'a> Machine<'a> {
    fn new(data: &'a [u8]) -> Self {
        Machine {
            data,
            pos: 0,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            objs: Vec::new(),
            used: 0,
            storages: HashMap::new(),
        }
    }
    fn charge(&mut self, n: usize) -> Result<(), String> {
        self.used = self.used.saturating_add(n);
        if self.used > MAX_PICKLE_MEMORY {
            return Err(format!(
                "the pickle builds more than {} of objects (a pickle bomb?)",
                mib(MAX_PICKLE_MEMORY as u64)
            ));
        }
        Ok(())
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or("truncated pickle")?;
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
    fn string(&mut self, n: usize) -> Result<V, String> {
        let b = self.take(n)?;
        self.charge(n)?;
        let s = String::from_utf8_lossy(b);
        Ok(V::Str(Rc::from(s.as_ref())))
    }
    fn line(&mut self) -> Result<String, String> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("unterminated GLOBAL")?;
        self.charge(n)?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }
    fn fence(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }
    fn pop(&mut self) -> Result<V, String> {
        if self.stack.len() <= self.fence() {
            return Err("pickle stack underflow".into());
        }
        self.stack
            .pop()
            .ok_or_else(|| "pickle stack underflow".to_string())
    }
    fn top(&self) -> Result<V, String> {
        if self.stack.len() <= self.fence() {
            return Err("pickle stack underflow".into());
        }
        self.stack
            .last()
            .cloned()
            .ok_or_else(|| "pickle stack underflow".to_string())
    }
    fn pop_mark(&mut self) -> Result<Vec<V>, String> {
        let at = self.marks.pop().ok_or("pickle MARK missing")?;
        if at > self.stack.len() {
            return Err("pickle stack underflow".into());
        }
        Ok(self.stack.split_off(at))
    }
    fn depth(&self, v: &V) -> u32 {
        match v {
            V::Tuple(i) | V::List(i) | V::Dict(i) => self.objs.get(*i).map_or(0, |o| o.depth),
            _ => 0,
        }
    }
    fn check_depth(d: u32) -> Result<u32, String> {
        if d > MAX_DEPTH {
            Err(format!(
                "the pickle nests containers more than {MAX_DEPTH} levels deep"
            ))
        } else {
            Ok(d)
        }
    }
    fn new_obj(&mut self, items: Items) -> Result<usize, String> {
        let inner = match &items {
            Items::Seq(v) => v.iter().map(|x| self.depth(x)).max(),
            Items::Map(v) => v
                .iter()
                .map(|(k, x)| self.depth(k).max(self.depth(x)))
                .max(),
        };
        let depth = Self::check_depth(inner.map_or(1, |d| d + 1))?;
        self.objs.push(Obj { items, depth });
        Ok(self.objs.len() - 1)
    }
    fn tuple(&mut self, items: Vec<V>) -> Result<V, String> {
        Ok(V::Tuple(self.new_obj(Items::Seq(items))?))
    }
    fn seq(&self, i: usize) -> &[V] {
        match self.objs.get(i).map(|o| &o.items) {
            Some(Items::Seq(v)) => v,
            _ => &[],
        }
    }
    /// Appends to the list (or dict) on top of the stack; APPEND on anything
    /// else we do not model (an opaque object) is ignored, on a scalar an error.
    fn extend_top(&mut self, seq: Vec<V>, map: Vec<(V, V)>) -> Result<(), String> {
        let target = self.top()?;
        let (i, is_list) = match target {
            V::List(i) => (i, true),
            V::Dict(i) => (i, false),
            V::Other => return Ok(()),
            _ => {
                return Err(
                    "APPEND or SETITEM on something that is neither a list nor a dict".into(),
                );
            }
        };
        let inner = seq
            .iter()
            .map(|x| self.depth(x))
            .chain(map.iter().map(|(k, x)| self.depth(k).max(self.depth(x))))
            .max()
            .unwrap_or(0);
        let obj = &mut self.objs[i];
        obj.depth = Self::check_depth(obj.depth.max(inner + 1))?;
        match (&mut obj.items, is_list) {
            (Items::Seq(l), true) if map.is_empty() => l.extend(seq),
            (Items::Map(d), false) if seq.is_empty() => d.extend(map),
            _ => {
                return Err(if is_list {
                    "SETITEM on a list"
                } else {
                    "APPEND on a dict"
                }
                .into());
            }
        }
        Ok(())
    }

    /// Runs one pickle from the current position to STOP and returns its
    /// value. The arena and the budget carry over between pickles (the legacy
    /// format has five in a row); the stack and the memo do not.
    fn load(&mut self) -> Result<V, String> {
        self.stack.clear();
        self.marks.clear();
        self.memo.clear();
        let start = self.pos;
        self.run()
            .map_err(|e| format!("{e} (pickle byte {})", self.pos.saturating_sub(start)))
    }

    fn run(&mut self) -> Result<V, String> {
        loop {
            self.charge(OP_COST)?;
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?;
                }
                0x95 => {
                    self.take(8)?;
                }
                b'.' => return self.pop(),
                b'}' => {
                    let i = self.new_obj(Items::Map(vec![]))?;
                    self.stack.push(V::Dict(i))
                }
                b']' => {
                    let i = self.new_obj(Items::Seq(vec![]))?;
                    self.stack.push(V::List(i))
                }
                b')' => {
                    let t = self.tuple(vec![])?;
                    self.stack.push(t)
                }
                b'(' => self.marks.push(self.stack.len()),
                b'N' => self.stack.push(V::None),
                0x88 | 0x89 => self.stack.push(V::Bool),
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
                        let mut buf = [if b.last().is_some_and(|x| x & 0x80 != 0) {
                            0xff
                        } else {
                            0
                        }; 8];
                        buf[..n].copy_from_slice(b);
                        self.stack.push(V::Int(i64::from_le_bytes(buf)));
                    }
                }
                b'G' => {
                    self.take(8)?;
                    self.stack.push(V::Float);
                }
                b'X' | b'T' => {
                    let n = self.u32()? as usize;
                    let s = self.string(n)?;
                    self.stack.push(s);
                }
                0x8c | b'U' => {
                    let n = self.u8()? as usize;
                    let s = self.string(n)?;
                    self.stack.push(s);
                }
                b'C' => {
                    let n = self.u8()? as usize;
                    self.take(n)?;
                    self.stack.push(V::Bytes);
                }
                b'B' => {
                    let n = self.u32()? as usize;
                    self.take(n)?;
                    self.stack.push(V::Bytes);
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack.push(V::Global(Rc::new((module, name))));
                }
                b'q' | b'r' | 0x94 => {
                    let i = match op {
                        b'q' => self.u8()? as u32,
                        b'r' => self.u32()?,
                        _ => self.memo.len() as u32,
                    };
                    let v = self.top()?;
                    self.memo.insert(i, v);
                }
                b'h' | b'j' => {
                    let i = if op == b'h' {
                        self.u8()? as u32
                    } else {
                        self.u32()?
                    };
                    let v = self
                        .memo
                        .get(&i)
                        .cloned()
                        .ok_or_else(|| format!("pickle memo entry {i} missing"))?;
                    self.stack.push(v);
                }
                b't' => {
                    let items = self.pop_mark()?;
                    let t = self.tuple(items)?;
                    self.stack.push(t);
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    let t = self.tuple(items)?;
                    self.stack.push(t);
                }
                b'a' => {
                    let v = self.pop()?;
                    self.extend_top(vec![v], vec![])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.extend_top(items, vec![])?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.extend_top(vec![], vec![(k, v)])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    if items.len() % 2 != 0 {
                        return Err("SETITEMS with an odd number of items".into());
                    }
                    let mut it = items.into_iter();
                    let mut pairs = Vec::new();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        pairs.push((k, v));
                    }
                    self.extend_top(vec![], pairs)?;
                }
                b'b' => {
                    // BUILD: OrderedDict's _metadata and similar state; not needed.
                    self.pop()?;
                    self.top()?;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = self.persistent(&pid)?;
                    self.stack.push(v);
                }
                b'R' => {
                    let args = self.pop()?;
                    let f = self.pop()?;
                    let v = self.reduce(&f, &args)?;
                    self.stack.push(v);
                }
                other => return Err(format!("unsupported pickle opcode 0x{other:02x}")),
            }
        }
    }

    fn persistent(&mut self, pid: &V) -> Result<V, String> {
        let V::Tuple(i) = pid else {
            return Err("unexpected persistent id".into());
        };
        let (kind, key) = match self.seq(*i) {
            [V::Str(tag), V::Global(g), key, ..] if tag.as_ref() == "storage" => {
                let kind = storage_kind(&g.1)
                    .ok_or_else(|| format!("unsupported storage type {:?}", short(&g.1)))?;
                let key = match key {
                    V::Str(s) => s.to_string(),
                    V::Int(i) => i.to_string(),
                    _ => return Err("unexpected storage key".into()),
                };
                (kind, key)
            }
            _ => return Err("unexpected persistent id".into()),
        };
        self.charge(key.len())?;
        if let Some(k) = self.storages.get(&key)
            && *k != kind
        {
            return Err(format!(
                "storage {} is given two element types ({k:?} and {kind:?})",
                short(&key)
            ));
        }
        self.storages.insert(key.clone(), kind);
        Ok(V::Storage(Rc::new((kind, key))))
    }

    fn ints(&self, v: &V, what: &str) -> Result<Vec<i64>, String> {
        let items = match v {
            V::Tuple(i) | V::List(i) => self.seq(*i),
            _ => return Err(format!("tensor {what} is not a tuple of ints")),
        };
        if items.len() > MAX_DIMS {
            return Err(format!(
                "tensor with {} dimensions (at most {MAX_DIMS})",
                items.len()
            ));
        }
        items
            .iter()
            .map(|x| {
                if let V::Int(i) = x {
                    Ok(*i)
                } else {
                    Err(format!("tensor {what} is not a tuple of ints"))
                }
            })
            .collect()
    }

    fn reduce(&mut self, f: &V, args: &V) -> Result<V, String> {
        let V::Global(g) = f else { return Ok(V::Other) };
        let V::Tuple(ai) = args else {
            return Err("REDUCE arguments are not a tuple".into());
        };
        match (g.0.as_str(), g.1.as_str()) {
            ("collections", "OrderedDict") => Ok(V::Dict(self.new_obj(Items::Map(vec![]))?)),
            ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
                if let [V::Storage(s), ..] = self.seq(*ai) {
                    // The key is copied into the tensor reference below.
                    let n = s.1.len();
                    self.charge(n)?;
                }
                let t = match self.seq(*ai) {
                    [V::Storage(s), V::Int(offset), size, stride, ..] => TensorRef {
                        kind: s.0,
                        key: s.1.clone(),
                        offset: *offset,
                        size: self.ints(size, "size")?,
                        stride: self.ints(stride, "stride")?,
                    },
                    _ => return Err("unexpected _rebuild_tensor_v2 arguments".into()),
                };
                self.charge(16 * t.size.len())?;
                Ok(V::Tensor(Rc::new(t)))
            }
            ("torch._utils", "_rebuild_parameter") => self
                .seq(*ai)
                .first()
                .cloned()
                .ok_or_else(|| "empty _rebuild_parameter".to_string()),
            _ => Ok(V::Other),
        }
    }

    /// The tensors of the state_dict `v` (or of the first dict inside it that
    /// holds tensors, for checkpoints such as `{"epoch": 3, "model": {...}}`),
    /// in order; a name given twice keeps its last tensor, as in Python.
    fn state_dict(&self, v: &V) -> Result<Named, String> {
        let mut visited = HashSet::new();
        match self.find_tensors(v, 0, &mut visited)? {
            Some(t) => Ok(t),
            None if matches!(v, V::Dict(_)) => Err("the checkpoint holds no tensors".into()),
            None => Err("the checkpoint is not a state_dict (a dict of tensors)".into()),
        }
    }

    fn find_tensors(
        &self,
        v: &V,
        depth: u32,
        visited: &mut HashSet<usize>,
    ) -> Result<Option<Named>, String> {
        let V::Dict(i) = v else { return Ok(None) };
        if !visited.insert(*i) {
            return Ok(None);
        }
        if depth > MAX_WRAPPING {
            return Err(format!(
                "the state_dict is wrapped in more than {MAX_WRAPPING} dicts"
            ));
        }
        let Some(Obj {
            items: Items::Map(pairs),
            ..
        }) = self.objs.get(*i)
        else {
            return Ok(None);
        };
        // Python's dict semantics: the last value of a repeated name wins.
        // A name shared through the memo is looked up by address, so that a
        // long name repeated many times is hashed once, not each time.
        let mut last: Vec<(&str, Option<&Rc<TensorRef>>)> = Vec::new();
        let mut by_addr: HashMap<*const u8, usize> = HashMap::new();
        let mut by_text: HashMap<&str, usize> = HashMap::new();
        for (k, v) in pairs {
            if let V::Str(k) = k {
                let t = if let V::Tensor(t) = v { Some(t) } else { None };
                let at = *by_addr.entry(k.as_ptr()).or_insert_with(|| {
                    *by_text.entry(k.as_ref()).or_insert_with(|| {
                        last.push((k, None));
                        last.len() - 1
                    })
                });
                last[at].1 = t;
            }
        }
        let out: Named = last
            .into_iter()
            .filter_map(|(k, t)| t.map(|t| (k.to_string(), Rc::clone(t))))
            .collect();
        if !out.is_empty() {
            return Ok(Some(out));
        }
        for (k, v) in pairs {
            if let (V::Str(_), V::Dict(_)) = (k, v)
                && let Some(t) = self.find_tensors(v, depth + 1, visited)?
            {
                return Ok(Some(t));
            }
        }
        Ok(None)
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

fn plan(refs: Named, storage_bytes: &HashMap<String, u64>) -> Result<Plan, String> {
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
                            format!("{}: storage {} is missing", short(name), short(&t.key))
                        })?;
                        view_bytes = view_bytes.saturating_add(
                            check_view(t, bytes).map_err(|e| format!("{}: {e}", short(name)))?,
                        );
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
        return Err(format!(
            "the tensors claim {view_bytes} bytes from only {storage_total} bytes of storage (stride-0 or overlapping views beyond the {} allowance)",
            mib(EXPANSION_ALLOWANCE)
        ));
    }
    Ok(p)
}

/// Checks that the view `t` lies inside a storage of `bytes` bytes; returns
/// the bytes of the (contiguous) tensor it makes.
fn check_view(t: &TensorRef, bytes: u64) -> Result<u64, String> {
    let elem = t.kind.elt_size_in_bytes() as u64;
    if !bytes.is_multiple_of(elem) {
        return Err(format!(
            "storage {} has {bytes} bytes, not a multiple of its {elem}-byte {:?} elements",
            short(&t.key),
            t.kind
        ));
    }
    let numel_storage = bytes / elem;
    if t.size.len() != t.stride.len() {
        return Err(format!(
            "{} sizes but {} strides",
            t.size.len(),
            t.stride.len()
        ));
    }
    if t.offset < 0 || t.size.iter().any(|&s| s < 0) || t.stride.iter().any(|&s| s < 0) {
        return Err(format!(
            "negative size, stride or storage offset (size {:?}, stride {:?}, offset {})",
            t.size, t.stride, t.offset
        ));
    }
    let overflow = || format!("size {:?} overflows", t.size);
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
            .ok_or_else(|| format!("stride {:?} overflows", t.stride))?;
    }
    if last >= numel_storage {
        return Err(format!(
            "view (size {:?}, stride {:?}, offset {}) reaches element {last} of a storage of {numel_storage} {:?} elements ({bytes} bytes)",
            t.size, t.stride, t.offset, t.kind
        ));
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
    ) -> Result<(), String> {
        for &id in ids {
            let v = &self.views[id];
            let t = if v.size.contains(&0) {
                Tensor::f_zeros(v.size.as_slice(), (v.kind, tch::Device::Cpu))
            } else {
                base.f_as_strided(v.size.as_slice(), v.stride.as_slice(), v.offset)
                    .and_then(|x| x.f_contiguous())
            };
            made[id] = Some(t.map_err(|e| format!("storage {}: {e}", short(key)))?);
        }
        Ok(())
    }

    fn finish(self, made: Vec<Option<Tensor>>) -> Result<Vec<(String, Tensor)>, String> {
        self.names
            .into_iter()
            .zip(self.view_of)
            .map(|(n, id)| match made.get(id).and_then(|t| t.as_ref()) {
                Some(t) => Ok((n, t.shallow_clone())),
                None => Err(format!("{}: its storage was never read", short(&n))),
            })
            .collect()
    }
}

/// Reads a `torch.save`d state_dict (zip or legacy format).
pub fn read(path: &Path) -> Result<Vec<(String, Tensor)>, String> {
    let err = |m: String| {
        format!(
            "cannot read {} as a PyTorch checkpoint: {m}",
            path.display()
        )
    };
    let mut file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let len = file.metadata().map_err(|e| err(e.to_string()))?.len();
    let mut magic = [0u8; 2];
    let zip = file.read_exact(&mut magic).is_ok() && &magic == b"PK";
    if zip {
        file.rewind().map_err(|e| err(e.to_string()))?;
        read_zip(std::io::BufReader::new(file), len).map_err(err)
    } else {
        drop(file);
        let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        read_legacy(&bytes).map_err(err)
    }
}

/// [`read`] for a checkpoint already in memory; `name` is what errors call it.
pub fn read_bytes(bytes: &[u8], name: &str) -> Result<Vec<(String, Tensor)>, String> {
    let r = if bytes.starts_with(b"PK") {
        read_zip(std::io::Cursor::new(bytes), bytes.len() as u64)
    } else {
        read_legacy(bytes)
    };
    r.map_err(|m| format!("cannot read {name} as a PyTorch checkpoint: {m}"))
}

/// Reads one zip entry, which must decompress to exactly its declared size,
/// and that at most `cap` bytes.
fn read_entry<R: Read + Seek>(
    zip: &mut zip::ZipArchive<R>,
    name: &str,
    cap: u64,
    what: &str,
) -> Result<Vec<u8>, String> {
    let mut f = zip
        .by_name(name)
        .map_err(|e| format!("{}: {e}", short(name)))?;
    let declared = f.size();
    if declared > cap {
        return Err(format!(
            "{} declares {declared} bytes, more than {what} ({cap} bytes)",
            short(name)
        ));
    }
    let mut buf = vec![0u8; declared as usize];
    fill(&mut f, name, &mut buf)?;
    Ok(buf)
}

/// Fills `buf` from the zip entry `f`, which must hold exactly that many
/// bytes (reading to its end also checks its CRC).
fn fill(f: &mut impl Read, name: &str, buf: &mut [u8]) -> Result<(), String> {
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
                return Err(format!(
                    "{name} holds {got} bytes, not the {} its zip header declares",
                    buf.len()
                ));
            }
            Ok(0) => return Ok(()),
            Ok(_) if got >= buf.len() => {
                return Err(format!(
                    "{name} holds more than the {} bytes its zip header declares",
                    buf.len()
                ));
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("{name}: {e}")),
        }
    }
}

fn read_zip<R: Read + Seek>(reader: R, file_len: u64) -> Result<Vec<(String, Tensor)>, String> {
    let mut zip =
        zip::ZipArchive::new(reader).map_err(|e| format!("not a readable zip archive: {e}"))?;
    let pkl_name = zip
        .file_names()
        .find(|n| n.ends_with("data.pkl"))
        .map(str::to_string)
        .ok_or("no data.pkl in the archive")?;
    let prefix = pkl_name[..pkl_name.len() - "data.pkl".len()].to_string();
    // All the archive's entries together may expand to its size plus ZIP_SLACK.
    let mut budget = file_len.saturating_add(ZIP_SLACK);
    if zip.file_names().any(|n| n == format!("{prefix}byteorder")) {
        let order = read_entry(&mut zip, &format!("{prefix}byteorder"), 16, "a byte order")?;
        budget -= order.len() as u64;
        if order != b"little" {
            return Err(format!(
                "byte order {:?} (only little-endian checkpoints are supported)",
                String::from_utf8_lossy(&order)
            ));
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
        let root = m.load().map_err(|e| format!("{pkl_name}: {e}"))?;
        m.state_dict(&root)?
    };
    drop(pkl);
    let mut sizes: HashMap<String, u64> = HashMap::new();
    let mut total: u64 = 0;
    let mut seen: HashSet<*const TensorRef> = HashSet::new();
    for (_, t) in &refs {
        if seen.insert(Rc::as_ptr(t)) && !sizes.contains_key(&t.key) {
            let name = format!("{prefix}data/{}", t.key);
            let n = zip
                .by_name(&name)
                .map_err(|e| format!("storage {} ({}): {e}", short(&t.key), short(&name)))?
                .size();
            total = total.saturating_add(n);
            sizes.insert(t.key.clone(), n);
        }
    }
    if total > budget {
        return Err(format!(
            "its storages declare {total} bytes, more than the archive's {file_len} bytes plus {} (a compression bomb or overlapping entries?)",
            mib(ZIP_SLACK)
        ));
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
        .map_err(|e| format!("storage {}: {e}", short(&key)))?;
        let mut f = zip
            .by_name(&name)
            .map_err(|e| format!("{}: {e}", short(&name)))?;
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

/// The magic number that starts a legacy checkpoint (a pickled long).
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

/// Legacy format: pickles of (magic, protocol, sys info, the object, storage
/// keys), then each storage as a little-endian u64 element count and its bytes.
fn read_legacy(bytes: &[u8]) -> Result<Vec<(String, Tensor)>, String> {
    let mut m = Machine::new(bytes);
    let no_magic =
        || "neither a zip archive nor a legacy torch.save file (no magic number)".to_string();
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
    // The keys stay shared strings: a long key listed many times through the
    // memo is neither copied nor hashed more than once.
    let keys: Vec<Rc<str>> = match m.load()? {
        V::List(i) => m
            .seq(i)
            .iter()
            .map(|k| {
                if let V::Str(s) = k {
                    Ok(Rc::clone(s))
                } else {
                    Err("a storage key is not a string".to_string())
                }
            })
            .collect::<Result<_, _>>()?,
        _ => return Err("legacy checkpoint without a storage key list".into()),
    };
    let refs = m.state_dict(&root)?;
    let mut pos = m.pos;
    let mut storages: HashMap<&str, &[u8]> = HashMap::new();
    let mut listed: HashSet<*const u8> = HashSet::new();
    for k in &keys {
        if !listed.insert(k.as_ptr()) || storages.contains_key(k.as_ref()) {
            return Err(format!("storage {} is listed twice", short(k)));
        }
        let header = bytes
            .get(pos..pos.saturating_add(8))
            .ok_or_else(|| format!("storage {}: truncated header", short(k)))?;
        let numel = u64::from_le_bytes(
            header
                .try_into()
                .map_err(|_| "truncated header".to_string())?,
        );
        pos += 8;
        let kind = m
            .storages
            .get(k.as_ref())
            .ok_or_else(|| format!("storage {} is listed but never described", short(k)))?;
        let len = numel
            .checked_mul(kind.elt_size_in_bytes() as u64)
            .filter(|&l| l <= (bytes.len() - pos) as u64)
            .ok_or_else(|| {
                format!(
                    "storage {} declares {numel} {kind:?} elements but only {} bytes follow",
                    short(k),
                    bytes.len() - pos
                )
            })? as usize;
        storages.insert(k, &bytes[pos..pos + len]);
        pos += len;
    }
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
        .map_err(|e| format!("storage {}: {e}", short(&key)))?;
        plan.materialise(&key, &ids, &base, &mut made)?;
    }
    plan.finish(made)
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
        assert!(e.contains("levels deep"), "{e}");
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
