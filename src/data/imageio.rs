//! Decoding images and masks into the tensors the backbone and the metrics need.

use super::DataError;
use std::path::Path;
use tch::{Kind, Tensor};

/// How images and masks are decoded and brought to the network's size (part of the
/// feature cache's key: a change here must not reuse features computed the old way).
/// JPEGs through libjpeg-turbo as PIL and OpenCV decode them, then Pillow 13's resizes.
pub const PREPROCESS: &str = "pil13-bilinear-antialias+pil-nearest-masks+libjpeg-turbo-islow-fancy";

const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// A JPEG stream starts with the SOI marker followed by another marker.
fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xFF, 0xD8, 0xFF])
}

/// JPEG pixels as the public pipeline gets them: OpenCV and PIL both decode with
/// libjpeg-turbo (accurate integer IDCT, fancy upsampling, libjpeg's YCbCr->RGB), and so
/// does TurboJPEG's default here. Grey JPEGs stay one channel, as PIL opens them ("L").
/// A libjpeg warning (truncated or corrupt data, which libjpeg patches over) is an error:
/// the pixels would not be the file's.
fn decode_jpeg(bytes: &[u8]) -> Result<image::DynamicImage, String> {
    use turbojpeg::{Colorspace, Decompressor, Image, PixelFormat};
    let mut dec = Decompressor::new().map_err(|e| e.to_string())?;
    let header = dec.read_header(bytes).map_err(|e| e.to_string())?;
    let format = match header.colorspace {
        Colorspace::Gray => PixelFormat::GRAY,
        Colorspace::YCbCr | Colorspace::RGB => PixelFormat::RGB,
        Colorspace::CMYK | Colorspace::YCCK => {
            return Err("a CMYK JPEG, which is not read: save it as an RGB JPEG or a PNG".into());
        }
    };
    let (w, h) = (header.width, header.height);
    let pitch = w * format.size();
    let mut pixels = vec![0u8; pitch * h];
    let out = Image { pixels: pixels.as_mut_slice(), width: w, pitch, height: h, format };
    dec.decompress(bytes, out).map_err(|e| e.to_string())?;
    let bad_size = || format!("{w}x{h} pixels do not fit an image");
    Ok(if format == PixelFormat::GRAY {
        image::DynamicImage::ImageLuma8(image::GrayImage::from_raw(w as u32, h as u32, pixels).ok_or_else(bad_size)?)
    } else {
        image::DynamicImage::ImageRgb8(image::RgbImage::from_raw(w as u32, h as u32, pixels).ok_or_else(bad_size)?)
    })
}

/// Decodes an image file: JPEGs (by content, whatever the extension) through
/// [`decode_jpeg`], everything else through the `image` crate.
fn open(path: &Path) -> Result<image::DynamicImage, DataError> {
    let bytes =
        std::fs::read(path).map_err(|e| DataError::Read { path: path.to_path_buf(), message: e.to_string() })?;
    let decode_err = |message: String| DataError::Decode { path: path.to_path_buf(), message };
    if is_jpeg(&bytes) {
        return decode_jpeg(&bytes).map_err(decode_err);
    }
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes));
    if let Ok(format) = image::ImageFormat::from_path(path) {
        reader.set_format(format);
    }
    let reader = reader.with_guessed_format().map_err(|e| decode_err(e.to_string()))?;
    reader.decode().map_err(|e| decode_err(e.to_string()))
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

/// The file's 8-bit RGB pixels, as PIL's `Image.open(path).convert("RGB")` gives them
/// (grey images have their level in all three channels).
pub fn load_rgb8(path: &Path) -> Result<image::RgbImage, DataError> {
    Ok(open(path)?.to_rgb8())
}

/// RGB image -> (3, size, size) float, decoded and resized as the public pipeline does
/// (libjpeg-turbo's pixels, PIL's antialiased BILINEAR on the 8-bit image,
/// `super::resize`), ImageNet-normalised.
pub fn load_image(path: &Path, size: i64) -> Result<Tensor, DataError> {
    let rgb = load_rgb8(path)?;
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
