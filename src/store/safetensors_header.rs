//! The framing of a safetensors file, checked before its tensors are decoded, so that a
//! truncated or damaged file is refused with what is wrong with it rather than with a
//! parser's terse word. The format: an 8-byte little-endian header length H, H bytes of
//! JSON (`{"name": {"dtype", "shape", "data_offsets": [begin, end]}, ..., "__metadata__":
//! {...}}`), then the data, every offset relative to byte 8 + H.

use std::path::Path;

/// Why bytes are not a whole safetensors file.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("file is {len} bytes, shorter than the 8-byte header length that starts a safetensors file: truncated?")]
    TooShort { len: u64 },
    #[error(
        "its header length (first 8 bytes) is {header} bytes, larger than the {after} bytes that follow it: \
         file is {len} bytes, the header says at least {needed}: truncated?"
    )]
    HeaderPastEnd { header: u64, after: u64, len: u64, needed: u64 },
    #[error("its header (bytes 8 to {end}) is not valid JSON: {message}")]
    Json { end: u64, message: String },
    #[error("its header (bytes 8 to {end}) is not a JSON object of tensors: {message}")]
    Layout { end: u64, message: String },
    #[error(
        "tensor {name}'s data ends {past} bytes past the end of the file: file is {len} bytes, the header says \
         {needed}: truncated?"
    )]
    DataPastEnd { name: String, past: u64, len: u64, needed: u64 },
}

/// What a whole file's header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The JSON header's length in bytes (the first 8 bytes).
    pub header_len: u64,
    /// Tensors listed (`__metadata__` not counted).
    pub tensors: usize,
    /// The file's length the header implies: 8 + header + the data's last byte.
    pub needed: u64,
}

/// Whether a file is meant as safetensors: named `*.safetensors`, or its 9th byte opens
/// the JSON header (a `torch.save` file starts with "PK" (zip) or 0x80 (a pickle)).
pub fn looks_like(path: &Path, bytes: &[u8]) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("safetensors")) || bytes.get(8) == Some(&b'{')
}

/// Checks the framing of `bytes`: a header length that fits the file, a JSON header of
/// tensors, and every tensor's data inside the file. (Dtypes, shapes and overlaps are
/// left to the decoder.)
pub fn check(bytes: &[u8]) -> Result<Header, HeaderError> {
    let len = bytes.len() as u64;
    let Some(first) = bytes.get(..8) else { return Err(HeaderError::TooShort { len }) };
    let header_len = u64::from_le_bytes(first.try_into().expect("8 bytes"));
    if header_len > len - 8 {
        return Err(HeaderError::HeaderPastEnd {
            header: header_len,
            after: len - 8,
            len,
            needed: header_len.saturating_add(8),
        });
    }
    let end = 8 + header_len;
    let json: serde_json::Value = serde_json::from_slice(&bytes[8..end as usize])
        .map_err(|e| HeaderError::Json { end, message: e.to_string() })?;
    let layout = |message: String| HeaderError::Layout { end, message };
    let serde_json::Value::Object(entries) = json else {
        return Err(layout("it is not an object".into()));
    };
    let (mut tensors, mut data_end, mut last) = (0, 0u64, String::new());
    for (name, entry) in &entries {
        if name == "__metadata__" {
            continue;
        }
        tensors += 1;
        let offsets = entry
            .get("data_offsets")
            .and_then(|o| o.as_array())
            .map(|o| o.iter().map(serde_json::Value::as_u64).collect::<Option<Vec<u64>>>().unwrap_or_default());
        let [begin, stop] = offsets.as_deref().unwrap_or_default() else {
            return Err(layout(format!("tensor {name} has no data_offsets [begin, end]")));
        };
        if stop < begin {
            return Err(layout(format!("tensor {name}'s data_offsets [{begin}, {stop}] end before they begin")));
        }
        if *stop > data_end {
            (data_end, last) = (*stop, name.clone());
        }
    }
    let needed = end + data_end;
    if needed > len {
        return Err(HeaderError::DataPastEnd { name: last, past: needed - len, len, needed });
    }
    Ok(Header { header_len, tensors, needed })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind, Tensor};

    fn file() -> Vec<u8> {
        let a = Tensor::zeros([4, 5], (Kind::Float, Device::Cpu));
        let b = Tensor::zeros([3], (Kind::Int64, Device::Cpu));
        crate::store::tensors::encode(&[("a", &a), ("b", &b)]).unwrap()
    }

    #[test]
    fn a_whole_file_passes_and_says_its_length() {
        let bytes = file();
        let h = check(&bytes).unwrap();
        assert_eq!((h.tensors, h.needed), (2, bytes.len() as u64));
        assert!(looks_like(Path::new("x.bin"), &bytes) && looks_like(Path::new("x.SafeTensors"), b"PK"));
        assert!(!looks_like(Path::new("x.pth.tar"), b"PK\x03\x04 not safetensors"));
    }

    #[test]
    fn each_cut_is_named_with_the_lengths() {
        let bytes = file();
        let n = bytes.len() as u64;
        let header = u64::from_le_bytes(bytes[..8].try_into().unwrap());
        assert_eq!(check(&bytes[..5]), Err(HeaderError::TooShort { len: 5 }));
        // Cut inside the header.
        let e = check(&bytes[..20]).unwrap_err();
        assert_eq!(e, HeaderError::HeaderPastEnd { header, after: 12, len: 20, needed: 8 + header });
        assert!(e.to_string().contains(&format!("file is 20 bytes, the header says at least {}", 8 + header)), "{e}");
        // Cut inside the data: the tensor whose data ends last is named (a: safetensors
        // writes the wider dtype, b's int64, first).
        let e = check(&bytes[..(n - 7) as usize]).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "tensor a's data ends 7 bytes past the end of the file: file is {} bytes, the header says {n}: \
                 truncated?",
                n - 7
            )
        );
        // A header that is not JSON.
        let mut bad = bytes.clone();
        bad[8] = b'#';
        assert!(matches!(check(&bad), Err(HeaderError::Json { .. })), "{:?}", check(&bad));
    }
}
