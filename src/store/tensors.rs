//! safetensors encoding of tch tensors to and from bytes (the store holds bytes, not files).
//! Float32, int64 and uint8 only: everything ras writes is one of those.

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use tch::{Kind, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum TensorCodecError {
    #[error("tensor {name}: unsupported kind {kind:?} (float32, int64 or uint8 only)")]
    Kind { name: String, kind: Kind },
    #[error("invalid safetensors data: {0}")]
    Format(String),
}

fn dtype(name: &str, kind: Kind) -> Result<(Dtype, usize), TensorCodecError> {
    match kind {
        Kind::Float => Ok((Dtype::F32, 4)),
        Kind::Int64 => Ok((Dtype::I64, 8)),
        Kind::Uint8 => Ok((Dtype::U8, 1)),
        kind => Err(TensorCodecError::Kind { name: name.into(), kind }),
    }
}

/// Serialises named tensors (any device) into one safetensors buffer, bit-exact.
pub fn encode<S: AsRef<str>>(tensors: &[(S, &Tensor)]) -> Result<Vec<u8>, TensorCodecError> {
    encode_with_metadata(tensors, None)
}

/// `encode`, with string metadata in the file's header (`__metadata__`).
pub fn encode_with_metadata<S: AsRef<str>>(
    tensors: &[(S, &Tensor)],
    metadata: Option<std::collections::HashMap<String, String>>,
) -> Result<Vec<u8>, TensorCodecError> {
    let mut raw: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let name = name.as_ref();
        let (dt, width) = dtype(name, t.kind())?;
        let t = t.to_device(tch::Device::Cpu).contiguous();
        let numel = t.numel();
        let mut bytes = vec![0u8; numel * width];
        t.copy_data_u8(&mut bytes, numel);
        raw.push((name.to_string(), dt, t.size().iter().map(|&d| d as usize).collect(), bytes));
    }
    let views: Vec<(String, TensorView<'_>)> = raw
        .iter()
        .map(|(n, dt, shape, bytes)| {
            TensorView::new(*dt, shape.clone(), bytes)
                .map(|v| (n.clone(), v))
                .map_err(|e| TensorCodecError::Format(e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    safetensors::serialize(views, metadata).map_err(|e| TensorCodecError::Format(e.to_string()))
}

/// Parses a safetensors buffer into named CPU tensors, in file order.
pub fn decode(bytes: &[u8]) -> Result<Vec<(String, Tensor)>, TensorCodecError> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| TensorCodecError::Format(e.to_string()))?;
    let mut out = vec![];
    for (name, view) in st.tensors() {
        let kind = match view.dtype() {
            Dtype::F32 => Kind::Float,
            Dtype::I64 => Kind::Int64,
            Dtype::U8 => Kind::Uint8,
            other => return Err(TensorCodecError::Format(format!("tensor {name}: unsupported dtype {other:?}"))),
        };
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        out.push((name, Tensor::from_data_size(view.data(), &shape, kind)));
    }
    Ok(out)
}

/// Copies named tensors from a file into a model's variables, only if the names and
/// shapes match exactly; otherwise returns every difference (missing, wrong shape,
/// unexpected), sorted, and copies nothing. Values are converted to each variable's kind.
pub fn copy_matching(
    vars: &mut std::collections::HashMap<String, Tensor>,
    file: &std::collections::BTreeMap<String, Tensor>,
) -> Result<(), Vec<String>> {
    let mut diffs = vec![];
    for (name, var) in vars.iter() {
        match file.get(name) {
            None => diffs.push(format!("missing {name} {:?}", var.size())),
            Some(t) if t.size() != var.size() => {
                diffs.push(format!("shape {name}: file {:?}, model {:?}", t.size(), var.size()))
            }
            Some(_) => {}
        }
    }
    diffs.extend(file.keys().filter(|n| !vars.contains_key(*n)).map(|n| format!("unexpected {n}")));
    if !diffs.is_empty() {
        diffs.sort();
        return Err(diffs);
    }
    tch::no_grad(|| {
        for (name, var) in vars.iter_mut() {
            var.copy_(&file[name].to_kind(var.kind()));
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_bit_exact() {
        let a = Tensor::randn([3, 5], (Kind::Float, tch::Device::Cpu));
        let b = Tensor::from_slice(&[1i64, -2, 3]);
        let c = Tensor::from_slice(&[0u8, 255]);
        let bytes = encode(&[("a", &a), ("b", &b), ("c", &c)]).unwrap();
        let back: std::collections::HashMap<_, _> = decode(&bytes).unwrap().into_iter().collect();
        assert!(back["a"].equal(&a));
        assert!(back["b"].equal(&b));
        assert!(back["c"].equal(&c));
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
    }
}
