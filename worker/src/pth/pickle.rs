//! The minimal pickle machine: the opcodes `torch.save` emits for a dict of
//! tensors, rebuilt as tensor references into named storages. It never
//! executes code and never allocates beyond its budget; it reads no storage bytes.
use super::*;

/// A pickle value. Containers are indices into the machine's arena, so cloning
/// a value is O(1) whatever it holds.
#[derive(Debug, Clone)]
pub(super) enum V {
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
pub(super) enum Items {
    Seq(Vec<V>),
    Map(Vec<(V, V)>),
}

#[derive(Debug)]
pub(super) struct Obj {
    pub(super) items: Items,
    pub(super) depth: u32,
}

/// A state_dict's tensors by name, as references into their storages.
pub(super) type Named = Vec<(String, Rc<TensorRef>)>;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct TensorRef {
    pub(super) kind: Kind,
    pub(super) key: String,
    pub(super) offset: i64,
    pub(super) size: Vec<i64>,
    pub(super) stride: Vec<i64>,
}

pub(super) fn storage_kind(name: &str) -> Option<Kind> {
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

pub(super) struct Machine<'a> {
    pub(super) data: &'a [u8],
    pub(super) pos: usize,
    pub(super) stack: Vec<V>,
    /// Stack lengths at each MARK (Python's metastack); the last is the fence
    /// below which nothing may be popped.
    pub(super) marks: Vec<usize>,
    pub(super) memo: HashMap<u32, V>,
    pub(super) objs: Vec<Obj>,
    pub(super) used: usize,
    /// Every storage named by a persistent id: key → element kind.
    pub(super) storages: HashMap<String, Kind>,
}

impl<'a> Machine<'a> {
    pub(super) fn new(data: &'a [u8]) -> Self {
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
    pub(super) fn charge(&mut self, n: usize) -> Result<(), PthError> {
        self.used = self.used.saturating_add(n);
        if self.used > MAX_PICKLE_MEMORY {
            return Err(PthError::Limit(format!(
                "the pickle builds more than {} of objects (a pickle bomb?)",
                mib(MAX_PICKLE_MEMORY as u64)
            )));
        }
        Ok(())
    }
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], PthError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| PthError::Pickle("truncated pickle".into()))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    pub(super) fn u8(&mut self) -> Result<u8, PthError> {
        Ok(self.take(1)?[0])
    }
    pub(super) fn u16(&mut self) -> Result<u16, PthError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    pub(super) fn u32(&mut self) -> Result<u32, PthError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(super) fn string(&mut self, n: usize) -> Result<V, PthError> {
        let b = self.take(n)?;
        self.charge(n)?;
        let s = String::from_utf8_lossy(b);
        Ok(V::Str(Rc::from(s.as_ref())))
    }
    pub(super) fn line(&mut self) -> Result<String, PthError> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| PthError::Pickle("unterminated GLOBAL".into()))?;
        self.charge(n)?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }
    pub(super) fn fence(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }
    pub(super) fn pop(&mut self) -> Result<V, PthError> {
        if self.stack.len() <= self.fence() {
            return Err(PthError::Pickle("pickle stack underflow".into()));
        }
        self.stack
            .pop()
            .ok_or_else(|| PthError::Pickle("pickle stack underflow".into()))
    }
    pub(super) fn top(&self) -> Result<V, PthError> {
        if self.stack.len() <= self.fence() {
            return Err(PthError::Pickle("pickle stack underflow".into()));
        }
        self.stack
            .last()
            .cloned()
            .ok_or_else(|| PthError::Pickle("pickle stack underflow".into()))
    }
    pub(super) fn pop_mark(&mut self) -> Result<Vec<V>, PthError> {
        let at = self
            .marks
            .pop()
            .ok_or_else(|| PthError::Pickle("pickle MARK missing".into()))?;
        if at > self.stack.len() {
            return Err(PthError::Pickle("pickle stack underflow".into()));
        }
        Ok(self.stack.split_off(at))
    }
    pub(super) fn depth(&self, v: &V) -> u32 {
        match v {
            V::Tuple(i) | V::List(i) | V::Dict(i) => self.objs.get(*i).map_or(0, |o| o.depth),
            _ => 0,
        }
    }
    pub(super) fn check_depth(d: u32) -> Result<u32, PthError> {
        if d > MAX_DEPTH {
            Err(PthError::Limit(format!(
                "the pickle nests containers more than {MAX_DEPTH} levels deep"
            )))
        } else {
            Ok(d)
        }
    }
    pub(super) fn new_obj(&mut self, items: Items) -> Result<usize, PthError> {
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
    pub(super) fn tuple(&mut self, items: Vec<V>) -> Result<V, PthError> {
        Ok(V::Tuple(self.new_obj(Items::Seq(items))?))
    }
    pub(super) fn seq(&self, i: usize) -> &[V] {
        match self.objs.get(i).map(|o| &o.items) {
            Some(Items::Seq(v)) => v,
            _ => &[],
        }
    }
    /// Appends to the list (or dict) on top of the stack; APPEND on anything
    /// else we do not model (an opaque object) is ignored, on a scalar an error.
    pub(super) fn extend_top(&mut self, seq: Vec<V>, map: Vec<(V, V)>) -> Result<(), PthError> {
        let target = self.top()?;
        let (i, is_list) = match target {
            V::List(i) => (i, true),
            V::Dict(i) => (i, false),
            V::Other => return Ok(()),
            _ => {
                return Err(PthError::WrongType(
                    "APPEND or SETITEM on something that is neither a list nor a dict".into(),
                ));
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
                return Err(PthError::WrongType(
                    if is_list {
                        "SETITEM on a list"
                    } else {
                        "APPEND on a dict"
                    }
                    .into(),
                ));
            }
        }
        Ok(())
    }

    /// Runs one pickle from the current position to STOP and returns its
    /// value. The arena and the budget carry over between pickles (the legacy
    /// format has five in a row); the stack and the memo do not.
    pub(super) fn load(&mut self) -> Result<V, PthError> {
        self.stack.clear();
        self.marks.clear();
        self.memo.clear();
        let start = self.pos;
        self.run().map_err(|e| PthError::AtPickleByte {
            at: self.pos.saturating_sub(start),
            source: Box::new(e),
        })
    }

    pub(super) fn run(&mut self) -> Result<V, PthError> {
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
                    let v = self.memo.get(&i).cloned().ok_or_else(|| {
                        PthError::Pickle(format!("pickle memo entry {i} missing"))
                    })?;
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
                        return Err(PthError::Pickle(
                            "SETITEMS with an odd number of items".into(),
                        ));
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
                other => return Err(PthError::UnsupportedOpcode(other)),
            }
        }
    }

    pub(super) fn persistent(&mut self, pid: &V) -> Result<V, PthError> {
        let V::Tuple(i) = pid else {
            return Err(PthError::WrongType("unexpected persistent id".into()));
        };
        let (kind, key) = match self.seq(*i) {
            [V::Str(tag), V::Global(g), key, ..] if tag.as_ref() == "storage" => {
                let kind = storage_kind(&g.1).ok_or_else(|| {
                    PthError::Unsupported(format!("unsupported storage type {:?}", short(&g.1)))
                })?;
                let key = match key {
                    V::Str(s) => s.to_string(),
                    V::Int(i) => i.to_string(),
                    _ => return Err(PthError::WrongType("unexpected storage key".into())),
                };
                (kind, key)
            }
            _ => return Err(PthError::WrongType("unexpected persistent id".into())),
        };
        self.charge(key.len())?;
        if let Some(k) = self.storages.get(&key)
            && *k != kind
        {
            return Err(PthError::Tensor(format!(
                "storage {} is given two element types ({k:?} and {kind:?})",
                short(&key)
            )));
        }
        self.storages.insert(key.clone(), kind);
        Ok(V::Storage(Rc::new((kind, key))))
    }

    pub(super) fn ints(&self, v: &V, what: &str) -> Result<Vec<i64>, PthError> {
        let items = match v {
            V::Tuple(i) | V::List(i) => self.seq(*i),
            _ => {
                return Err(PthError::WrongType(format!(
                    "tensor {what} is not a tuple of ints"
                )));
            }
        };
        if items.len() > MAX_DIMS {
            return Err(PthError::Limit(format!(
                "tensor with {} dimensions (at most {MAX_DIMS})",
                items.len()
            )));
        }
        items
            .iter()
            .map(|x| {
                if let V::Int(i) = x {
                    Ok(*i)
                } else {
                    Err(PthError::WrongType(format!(
                        "tensor {what} is not a tuple of ints"
                    )))
                }
            })
            .collect()
    }

    pub(super) fn reduce(&mut self, f: &V, args: &V) -> Result<V, PthError> {
        let V::Global(g) = f else { return Ok(V::Other) };
        let V::Tuple(ai) = args else {
            return Err(PthError::WrongType(
                "REDUCE arguments are not a tuple".into(),
            ));
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
                    _ => {
                        return Err(PthError::WrongType(
                            "unexpected _rebuild_tensor_v2 arguments".into(),
                        ));
                    }
                };
                self.charge(16 * t.size.len())?;
                Ok(V::Tensor(Rc::new(t)))
            }
            ("torch._utils", "_rebuild_parameter") => self
                .seq(*ai)
                .first()
                .cloned()
                .ok_or_else(|| PthError::WrongType("empty _rebuild_parameter".into())),
            _ => Ok(V::Other),
        }
    }

    /// The tensors of the state_dict `v` (or of the first dict inside it that
    /// holds tensors, for checkpoints such as `{"epoch": 3, "model": {...}}`),
    /// in order; a name given twice keeps its last tensor, as in Python.
    pub(super) fn state_dict(&self, v: &V) -> Result<Named, PthError> {
        let mut visited = HashSet::new();
        match self.find_tensors(v, 0, &mut visited)? {
            Some(t) => Ok(t),
            None if matches!(v, V::Dict(_)) => Err(PthError::WrongType(
                "the checkpoint holds no tensors".into(),
            )),
            None => Err(PthError::WrongType(
                "the checkpoint is not a state_dict (a dict of tensors)".into(),
            )),
        }
    }

    pub(super) fn find_tensors(
        &self,
        v: &V,
        depth: u32,
        visited: &mut HashSet<usize>,
    ) -> Result<Option<Named>, PthError> {
        let V::Dict(i) = v else { return Ok(None) };
        if !visited.insert(*i) {
            return Ok(None);
        }
        if depth > MAX_WRAPPING {
            return Err(PthError::Limit(format!(
                "the state_dict is wrapped in more than {MAX_WRAPPING} dicts"
            )));
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
