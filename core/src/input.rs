//! Images to model input: decoding, colour conversion, resizing and normalisation.
//!
//! An image is decoded from its file, converted to grayscale or RGB as [`InputSpec::channels`] asks,
//! fitted to the input size by [`ResizeMode`], and each pixel `p` (0..255) becomes
//! `(p · scale − mean[c]) / std[c]`, written in the configured layout.
//!
//! ```
//! use hudd_core::config::{InputSpec, Layout, ResizeMode};
//! let spec = InputSpec { height: 2, width: 2, channels: 1, layout: Layout::Nchw, scale: 1.0 / 255.0,
//!                        mean: vec![0.0], std: vec![1.0], resize: ResizeMode::Stretch };
//! let img = image::DynamicImage::ImageLuma8(image::GrayImage::from_raw(2, 2, vec![0, 255, 51, 0]).unwrap());
//! let x = hudd_core::input::to_tensor(&img, &spec);
//! assert_eq!(x.shape(), &[1, 2, 2]);
//! assert!((x[[0, 0, 1]] - 1.0).abs() < 1e-6 && (x[[0, 1, 0]] - 0.2).abs() < 1e-6);
//! ```

use std::path::Path;

use image::imageops::FilterType;
use image::{DynamicImage, GenericImageView};
use ndarray::{Array3, ArrayD, Axis, IxDyn};

use crate::config::{InputSpec, Layout, ResizeMode};

/// File extensions read as images (lower case).
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "bmp"];

/// Whether `path` has an image extension hudd reads.
pub fn is_image_path(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// The most pixels an image file may have (64 Mpx: 8192 × 8192, or a 9000 × 7000 photograph).
pub const MAX_PIXELS: u64 = 1 << 26;

/// The most memory one decode may allocate (16-bit RGBA at [`MAX_PIXELS`]).
const MAX_DECODE_BYTES: u64 = MAX_PIXELS * 8;

/// Decodes an image file. The error is a short reason for the skip record.
pub fn decode(path: &Path) -> Result<DynamicImage, String> {
    let bytes = crate::fsio::read(path, crate::fsio::IMAGE_LIMIT).map_err(|e| format!("cannot read file: {e}"))?;
    decode_bytes(&bytes)
}

/// Decodes an image file's contents (see [`decode`]).
pub fn decode_bytes(bytes: &[u8]) -> Result<DynamicImage, String> {
    if bytes.is_empty() {
        return Err("empty file".into());
    }
    let reader = || {
        image::ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| format!("cannot read file: {e}"))
    };
    let header = reader()?;
    if header.format().is_none() {
        return Err("not an image (unrecognised file contents)".into());
    }
    // The header's size first: a tiny file may declare an image that would not fit in memory.
    let (w, h) = header.into_dimensions().map_err(|e| format!("corrupt or truncated image: {e}"))?;
    let pixels = u64::from(w) * u64::from(h);
    if pixels > MAX_PIXELS {
        return Err(format!(
            "image is {w} × {h} pixels ({:.0} Mpx); hudd decodes images of at most {} Mpx",
            pixels as f64 / 1e6,
            MAX_PIXELS / 1_000_000
        ));
    }
    let mut reader = reader()?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| format!("corrupt or truncated image: {e}"))?;
    if img.width() == 0 || img.height() == 0 {
        return Err("image has zero width or height".into());
    }
    Ok(img)
}

/// Loads one image file as a tensor of [`InputSpec::image_shape`].
pub fn load(path: &Path, spec: &InputSpec) -> Result<Array3<f32>, String> {
    decode(path).map(|img| to_tensor(&img, spec))
}

/// Converts a decoded image to a tensor of [`InputSpec::image_shape`].
pub fn to_tensor(img: &DynamicImage, spec: &InputSpec) -> Array3<f32> {
    let fitted = fit(img, spec);
    let (w, h) = (spec.width, spec.height);
    let mut chw = Array3::<f32>::zeros((spec.channels, h, w));
    let norm = |c: usize, p: u8| (p as f32 * spec.scale - spec.mean[c]) / spec.std[c];
    if spec.channels == 1 {
        let g = fitted.to_luma8();
        for (x, y, p) in g.enumerate_pixels() {
            chw[[0, y as usize, x as usize]] = norm(0, p.0[0]);
        }
    } else {
        let rgb = fitted.to_rgb8();
        for (x, y, p) in rgb.enumerate_pixels() {
            for c in 0..3 {
                chw[[c, y as usize, x as usize]] = norm(c, p.0[c]);
            }
        }
    }
    match spec.layout {
        Layout::Nchw => chw,
        Layout::Nhwc => chw.permuted_axes([1, 2, 0]).as_standard_layout().into_owned(),
    }
}

/// Stacks image tensors into one batch tensor.
pub fn stack(images: &[Array3<f32>], spec: &InputSpec) -> ArrayD<f32> {
    let shape = spec.batch_shape(images.len());
    let mut batch = ArrayD::<f32>::zeros(IxDyn(&shape));
    for (i, img) in images.iter().enumerate() {
        batch.index_axis_mut(Axis(0), i).assign(img);
    }
    batch
}

fn fit(img: &DynamicImage, spec: &InputSpec) -> DynamicImage {
    let (w, h) = (spec.width as u32, spec.height as u32);
    let (iw, ih) = img.dimensions();
    if (iw, ih) == (w, h) {
        return img.clone();
    }
    match spec.resize {
        ResizeMode::Stretch => img.resize_exact(w, h, FilterType::Triangle),
        ResizeMode::CenterCrop => img.resize_to_fill(w, h, FilterType::Triangle),
        ResizeMode::Pad => {
            let inner = img.resize(w, h, FilterType::Triangle);
            let mut canvas = DynamicImage::new(w, h, inner.color());
            let (x, y) = ((w - inner.width()) / 2, (h - inner.height()) / 2);
            image::imageops::overlay(&mut canvas, &inner, x as i64, y as i64);
            canvas
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(h: usize, w: usize, c: usize, layout: Layout, resize: ResizeMode) -> InputSpec {
        InputSpec {
            height: h,
            width: w,
            channels: c,
            layout,
            scale: 1.0,
            mean: vec![0.0; c],
            std: vec![1.0; c],
            resize,
        }
    }

    fn rgb(w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 3]) -> DynamicImage {
        DynamicImage::ImageRgb8(image::RgbImage::from_fn(w, h, |x, y| image::Rgb(f(x, y))))
    }

    #[test]
    fn nhwc_is_the_transpose_of_nchw() {
        let img = rgb(3, 2, |x, y| [x as u8, y as u8, 7]);
        let a = to_tensor(&img, &spec(2, 3, 3, Layout::Nchw, ResizeMode::Stretch));
        let b = to_tensor(&img, &spec(2, 3, 3, Layout::Nhwc, ResizeMode::Stretch));
        assert_eq!(b.shape(), &[2, 3, 3]);
        assert_eq!(a[[0, 1, 2]], 2.0);
        assert_eq!(a[[1, 1, 2]], 1.0);
        assert_eq!(b[[1, 2, 0]], 2.0);
        assert_eq!(b[[1, 2, 2]], 7.0);
    }

    #[test]
    fn mean_and_std_apply_per_channel() {
        let img = rgb(1, 1, |_, _| [10, 20, 30]);
        let mut s = spec(1, 1, 3, Layout::Nchw, ResizeMode::Stretch);
        s.mean = vec![10.0, 0.0, 30.0];
        s.std = vec![1.0, 2.0, 10.0];
        let x = to_tensor(&img, &s);
        assert_eq!(x.iter().copied().collect::<Vec<_>>(), vec![0.0, 10.0, 0.0]);
    }

    #[test]
    fn other_sizes_are_resized_by_mode() {
        let img = rgb(8, 4, |_, _| [255, 255, 255]);
        for mode in [ResizeMode::Stretch, ResizeMode::CenterCrop, ResizeMode::Pad] {
            let x = to_tensor(&img, &spec(4, 4, 1, Layout::Nchw, mode));
            assert_eq!(x.shape(), &[1, 4, 4]);
            let white = x.iter().filter(|v| **v > 250.0).count();
            match mode {
                // Padding a 2:1 image into a square leaves the top and bottom quarters black.
                ResizeMode::Pad => assert_eq!(white, 8, "{mode:?}"),
                _ => assert_eq!(white, 16, "{mode:?}"),
            }
        }
    }

    #[test]
    fn corrupt_files_give_reasons_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.png");
        std::fs::write(&empty, b"").unwrap();
        assert_eq!(decode(&empty).unwrap_err(), "empty file");
        let text = dir.path().join("notes.png");
        std::fs::write(&text, b"this is not an image at all").unwrap();
        assert!(decode(&text).unwrap_err().contains("not an image"));
        let good = dir.path().join("good.png");
        rgb(5, 5, |x, y| [x as u8 * 40, y as u8 * 40, 0]).save(&good).unwrap();
        let bytes = std::fs::read(&good).unwrap();
        let truncated = dir.path().join("truncated.png");
        std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
        assert!(decode(&truncated).unwrap_err().contains("corrupt or truncated"));
        assert!(decode(&dir.path().join("missing.png")).unwrap_err().contains("cannot read"));
    }

    #[test]
    fn a_header_declaring_a_huge_image_is_refused_before_decoding() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge.png");
        std::fs::write(&path, png_header(100_000, 100_000)).unwrap();
        let err = decode(&path).unwrap_err();
        assert!(err.contains("100000 × 100000 pixels") && err.contains("at most 67 Mpx"), "{err}");
        // The same header at a plausible size is merely truncated.
        std::fs::write(&path, png_header(100, 100)).unwrap();
        assert!(decode(&path).unwrap_err().contains("corrupt or truncated"));
    }

    /// A PNG signature, an IHDR chunk (8-bit grayscale) and an empty IDAT: a header, no pixels.
    fn png_header(w: u32, h: u32) -> Vec<u8> {
        let mut ihdr = w.to_be_bytes().to_vec();
        ihdr.extend(h.to_be_bytes());
        ihdr.extend([8, 0, 0, 0, 0]);
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        for (kind, data) in [(&b"IHDR"[..], &ihdr[..]), (b"IDAT", &[])] {
            let mut chunk = kind.to_vec();
            chunk.extend(data);
            out.extend((data.len() as u32).to_be_bytes());
            out.extend(&chunk);
            out.extend(crc32(&chunk).to_be_bytes());
        }
        out
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in bytes {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 == 1 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            }
        }
        !c
    }
}
