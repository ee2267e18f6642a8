//! Decoding images and masks into the tensors the backbone and the metrics need.

use super::DataError;
use std::path::Path;
use tch::{Kind, Tensor};

/// How images and masks are brought to the network's size (part of the feature cache's
/// key: a change here must not reuse features computed the old way).
pub const PREPROCESS: &str = "pil-bilinear-antialias+pil-nearest-masks";

const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const STD: [f32; 3] = [0.229, 0.224, 0.225];

fn open(path: &Path) -> Result<image::DynamicImage, DataError> {
    let reader = image::ImageReader::open(path)
        .map_err(|e| DataError::Read { path: path.to_path_buf(), message: e.to_string() })?
        .with_guessed_format()
        .map_err(|e| DataError::Read { path: path.to_path_buf(), message: e.to_string() })?;
    reader.decode().map_err(|e| DataError::Decode { path: path.to_path_buf(), message: e.to_string() })
}

/// Width and height from the file header (no full decode).
pub fn dimensions(path: &Path) -> Result<(u32, u32), DataError> {
    image::image_dimensions(path).map_err(|e| DataError::Decode { path: path.to_path_buf(), message: e.to_string() })
}

/// Width and height after decoding every pixel: a truncated or corrupt file that has a
/// valid header fails here (and in training, hours later), not in [`dimensions`].
pub fn decoded_dimensions(path: &Path) -> Result<(u32, u32), DataError> {
    open(path).map(|img| (img.width(), img.height()))
}

/// Errors unless the mask has its image's size.
pub fn check_mask_dims(mask: &Path, image: &Path, image_dims: (u32, u32)) -> Result<(), DataError> {
    let (mw, mh) = dimensions(mask)?;
    if (mw, mh) != image_dims {
        return Err(DataError::MaskSize {
            mask: mask.to_path_buf(),
            mask_w: mw,
            mask_h: mh,
            image: image.to_path_buf(),
            image_w: image_dims.0,
            image_h: image_dims.1,
        });
    }
    Ok(())
}

/// RGB image -> (3, size, size) float, resized as the public pipeline does (PIL's
/// antialiased BILINEAR on the 8-bit image, `super::resize`), ImageNet-normalised.
pub fn load_image(path: &Path, size: i64) -> Result<Tensor, DataError> {
    let rgb = open(path)?.to_rgb8();
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    let s = size as usize;
    let pixels = if (w, h) != (s, s) { super::resize::bilinear(rgb.as_raw(), w, h, 3, s, s) } else { rgb.into_raw() };
    let t =
        Tensor::from_data_size(&pixels, &[size, size, 3], Kind::Uint8).permute([2, 0, 1]).to_kind(Kind::Float) / 255.0;
    let mean = Tensor::from_slice(&MEAN).view([3, 1, 1]);
    let std = Tensor::from_slice(&STD).view([3, 1, 1]);
    Ok((t - mean) / std)
}

/// Binary ground truth (size, size) as bool: mask file resized nearest, non-zero = anomalous.
/// `label` false -> all zeros; anomalous without a mask -> all ones (spec section 6).
pub fn load_mask(mask: Option<&Path>, image: &Path, label: bool, size: i64) -> Result<Tensor, DataError> {
    let opts = (Kind::Bool, tch::Device::Cpu);
    match (label, mask) {
        (false, _) => Ok(Tensor::zeros([size, size], opts)),
        (true, None) => Ok(Tensor::ones([size, size], opts)),
        (true, Some(m)) => {
            check_mask_dims(m, image, dimensions(image)?)?;
            let g = open(m)?.to_luma8();
            let (w, h) = (g.width() as usize, g.height() as usize);
            let s = size as usize;
            // PIL's NEAREST, as the public pipeline resizes masks.
            let pixels = if (w, h) != (s, s) { super::resize::nearest(g.as_raw(), w, h, s, s) } else { g.into_raw() };
            Ok(Tensor::from_data_size(&pixels, &[size, size], Kind::Uint8).gt(0))
        }
    }
}
