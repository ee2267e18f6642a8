//! Writes what Python's `torch.save` writes, natively: a zip archive with a pickle
//! (`archive/data.pkl`) that names one storage per tensor (`archive/data/<i>`, raw
//! little-endian bytes), so that `torch.load(path, weights_only=True)` reads it with no
//! conversion step and no Python on our side.
//!
//! Only what a checkpoint needs: a dict of str keys whose values are ints, floats, strings
//! or an `OrderedDict` of tensors (a state dict). The pickle uses only opcodes and globals
//! that PyTorch's weights-only unpickler accepts (`collections.OrderedDict`,
//! `torch._utils._rebuild_tensor_v2`, `torch.FloatStorage`, `torch.LongStorage`), the same
//! ones `torch.save` itself emits for a state dict (pickle protocol 2, persistent ids
//! `('storage', <storage type>, '<key>', 'cpu', <numel>)`). Records are stored
//! uncompressed and 64-byte aligned as PyTorch aligns them (so `mmap=True` works too).
//! Checked against real PyTorch in tests/interop.rs.

use std::io::{Cursor, Write};
use tch::{Kind, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum PthError {
    #[error("tensor {name}: {kind:?} cannot be written (float32 or int64 only)")]
    Kind { name: String, kind: Kind },
    #[error("writing the archive")]
    Zip(#[from] zip::result::ZipError),
    #[error("writing the archive")]
    Io(#[from] std::io::Error),
}

/// A value of the checkpoint dict.
pub enum Value {
    Int(i64),
    Float(f64),
    Str(String),
    /// A state dict: names and tensors, in this order.
    StateDict(Vec<(String, Tensor)>),
}

/// Protocol-2 pickle opcodes used here (names as in CPython's pickle.py).
mod op {
    pub const PROTO: u8 = 0x80;
    pub const EMPTY_DICT: u8 = b'}';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const MARK: u8 = b'(';
    pub const TUPLE: u8 = b't';
    pub const SETITEMS: u8 = b'u';
    pub const BINUNICODE: u8 = b'X';
    pub const GLOBAL: u8 = b'c';
    pub const REDUCE: u8 = b'R';
    pub const BINPERSID: u8 = b'Q';
    pub const BININT: u8 = b'J';
    pub const LONG1: u8 = 0x8a;
    pub const BINFLOAT: u8 = b'G';
    pub const NEWFALSE: u8 = 0x89;
    pub const STOP: u8 = b'.';
}

/// The pickle stream and the storages it refers to.
struct Pickler {
    out: Vec<u8>,
    storages: Vec<Vec<u8>>,
}

impl Pickler {
    fn str(&mut self, s: &str) {
        self.out.push(op::BINUNICODE);
        self.out.extend((s.len() as u32).to_le_bytes());
        self.out.extend(s.as_bytes());
    }

    fn int(&mut self, v: i64) {
        if let Ok(v) = i32::try_from(v) {
            self.out.push(op::BININT);
            self.out.extend(v.to_le_bytes());
        } else {
            // LONG1: two's complement little-endian, 8 bytes is always enough for an i64.
            self.out.extend([op::LONG1, 8]);
            self.out.extend(v.to_le_bytes());
        }
    }

    fn float(&mut self, v: f64) {
        self.out.push(op::BINFLOAT);
        self.out.extend(v.to_be_bytes());
    }

    fn global(&mut self, module: &str, name: &str) {
        self.out.push(op::GLOBAL);
        self.out.extend(format!("{module}\n{name}\n").as_bytes());
    }

    fn int_tuple(&mut self, xs: &[i64]) {
        if xs.is_empty() {
            self.out.push(op::EMPTY_TUPLE);
            return;
        }
        self.out.push(op::MARK);
        for &x in xs {
            self.int(x);
        }
        self.out.push(op::TUPLE);
    }

    fn ordered_dict(&mut self) {
        self.global("collections", "OrderedDict");
        self.out.extend([op::EMPTY_TUPLE, op::REDUCE]);
    }

    /// `torch._utils._rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict())`
    /// over a new storage holding the tensor's bytes.
    fn tensor(&mut self, name: &str, t: &Tensor) -> Result<(), PthError> {
        let (storage_type, width) = match t.kind() {
            Kind::Float => ("FloatStorage", 4),
            Kind::Int64 => ("LongStorage", 8),
            kind => return Err(PthError::Kind { name: name.into(), kind }),
        };
        let t = t.to_device(tch::Device::Cpu).contiguous();
        let numel = t.numel();
        let mut bytes = vec![0u8; numel * width];
        t.copy_data_u8(&mut bytes, numel);
        let key = self.storages.len().to_string();
        self.storages.push(bytes);
        let size = t.size();
        let mut stride = vec![1i64; size.len()];
        for i in (0..size.len().saturating_sub(1)).rev() {
            stride[i] = stride[i + 1] * size[i + 1];
        }
        self.global("torch._utils", "_rebuild_tensor_v2");
        self.out.push(op::MARK);
        // persistent id of the storage
        self.out.push(op::MARK);
        self.str("storage");
        self.global("torch", storage_type);
        self.str(&key);
        self.str("cpu");
        self.int(numel as i64);
        self.out.extend([op::TUPLE, op::BINPERSID]);
        self.int(0); // storage offset
        self.int_tuple(&size);
        self.int_tuple(&stride);
        self.out.push(op::NEWFALSE); // requires_grad
        self.ordered_dict(); // backward hooks
        self.out.extend([op::TUPLE, op::REDUCE]);
        Ok(())
    }

    fn value(&mut self, v: &Value) -> Result<(), PthError> {
        match v {
            Value::Int(i) => self.int(*i),
            Value::Float(f) => self.float(*f),
            Value::Str(s) => self.str(s),
            Value::StateDict(items) => {
                self.ordered_dict();
                if !items.is_empty() {
                    self.out.push(op::MARK);
                    for (name, t) in items {
                        self.str(name);
                        self.tensor(name, t)?;
                    }
                    self.out.push(op::SETITEMS);
                }
            }
        }
        Ok(())
    }
}

/// The bytes of `torch.save({key: value, ...})` for these entries (in this order).
pub fn save(entries: &[(&str, Value)]) -> Result<Vec<u8>, PthError> {
    let mut p = Pickler { out: vec![op::PROTO, 2, op::EMPTY_DICT], storages: vec![] };
    if !entries.is_empty() {
        p.out.push(op::MARK);
        for (k, v) in entries {
            p.str(k);
            p.value(v)?;
        }
        p.out.push(op::SETITEMS);
    }
    p.out.push(op::STOP);

    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let stored =
        zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Stored).large_file(false);
    let record = |zip: &mut zip::ZipWriter<Cursor<Vec<u8>>>, name: &str, bytes: &[u8]| -> Result<(), PthError> {
        zip.start_file_aligned(format!("archive/{name}"), stored, 64)?;
        zip.write_all(bytes)?;
        Ok(())
    };
    record(&mut zip, "data.pkl", &p.out)?;
    record(&mut zip, "byteorder", b"little")?;
    for (i, s) in p.storages.iter().enumerate() {
        record(&mut zip, &format!("data/{i}"), s)?;
    }
    record(&mut zip, "version", b"3\n")?;
    Ok(zip.finish()?.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pickle_of_a_small_checkpoint_has_the_expected_opcodes_and_storages() {
        let t = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).view([2, 3]);
        let bytes = save(&[("epoch", Value::Int(3)), ("state_dict", Value::StateDict(vec![("w".into(), t)]))]).unwrap();
        let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
        let names: Vec<String> = zip.file_names().map(String::from).collect();
        for n in ["archive/data.pkl", "archive/byteorder", "archive/data/0", "archive/version"] {
            assert!(names.contains(&n.to_string()), "{n} missing from {names:?}");
        }
        let mut data = vec![];
        std::io::Read::read_to_end(&mut zip.by_name("archive/data/0").unwrap(), &mut data).unwrap();
        assert_eq!(data.len(), 24);
        assert_eq!(&data[..4], &1.0f32.to_le_bytes());
        let mut pkl = vec![];
        std::io::Read::read_to_end(&mut zip.by_name("archive/data.pkl").unwrap(), &mut pkl).unwrap();
        assert_eq!(&pkl[..3], &[0x80, 2, b'}']);
        assert_eq!(*pkl.last().unwrap(), b'.');
        let text = String::from_utf8_lossy(&pkl);
        assert!(
            text.contains("torch._utils\n_rebuild_tensor_v2\n") && text.contains("torch\nFloatStorage\n"),
            "{text}"
        );
        // stride of a (2, 3) tensor is (3, 1): MARK BININT 3 BININT 1 TUPLE
        let stride = [b'(', b'J', 3, 0, 0, 0, b'J', 1, 0, 0, 0, b't'];
        assert!(pkl.windows(stride.len()).any(|w| w == stride), "stride tuple (3, 1) not found");
    }

    #[test]
    fn other_kinds_are_refused_with_the_name() {
        let t = Tensor::from_slice(&[1u8, 2]);
        let err = save(&[("state_dict", Value::StateDict(vec![("mask".into(), t)]))]).unwrap_err();
        assert!(err.to_string().contains("mask"), "{err}");
    }
}
