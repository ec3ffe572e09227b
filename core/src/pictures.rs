//! Pictures for people: animated GIFs of a cluster's members and heatmap overlays (a diverging
//! palette centred on zero: blue for negative relevance, red for positive, over the image in grey).
//! Files are renamed into place but not forced to disk one by one: the folder they belong to is
//! marked complete by a file written afterwards (`clusters.json`).

use std::path::Path;

use image::{imageops::FilterType, DynamicImage, GrayImage, Rgb, RgbImage, Rgba, RgbaImage};

use crate::error::{Error, Result};
use crate::fsio::write_atomic_unsynced as write_atomic;

/// Small pictures are enlarged (nearest neighbour, integer factor) to at least this size.
const MIN_SIDE: u32 = 112;

fn out_err(what: &'static str, path: &Path, reason: impl ToString) -> Error {
    Error::Output { what, path: path.to_path_buf(), reason: reason.to_string() }
}

/// Decodes the picture at `path` (once per stage: GIFs and overlays take decoded pictures).
pub fn open(path: &Path) -> Result<DynamicImage> {
    crate::input::decode(path).map_err(|reason| out_err("picture", path, reason))
}

/// Size after fitting into `max_side` (downscaling only) and enlarging tiny pictures to
/// [`MIN_SIDE`].
fn fit(w: u32, h: u32, max_side: u32) -> (u32, u32) {
    let (w, h) = (w.max(1), h.max(1));
    let long = w.max(h);
    if long > max_side {
        let s = max_side as f64 / long as f64;
        (((w as f64 * s).round() as u32).max(1), ((h as f64 * s).round() as u32).max(1))
    } else if long < MIN_SIDE {
        let f = MIN_SIDE.div_ceil(long);
        (w * f, h * f)
    } else {
        (w, h)
    }
}

/// Nearest neighbour for whole-number enlargements (crisp and fast), a triangle filter otherwise.
fn filter(from: u32, to: u32) -> FilterType {
    if to >= from && to.is_multiple_of(from.max(1)) {
        FilterType::Nearest
    } else {
        FilterType::Triangle
    }
}

/// Writes an animated GIF of `images` (all scaled to the first one's size, at most `max_side`
/// pixels on the long side) showing `per_minute` images per minute, looping forever.
pub fn write_gif(path: &Path, images: &[&DynamicImage], per_minute: f64, max_side: u32) -> Result<()> {
    let first = images.first().ok_or_else(|| out_err("GIF", path, "no images"))?;
    let (w, h) = fit(first.width(), first.height(), max_side);
    let (gw, gh) = (
        u16::try_from(w).map_err(|_| out_err("GIF", path, "too wide"))?,
        u16::try_from(h).map_err(|_| out_err("GIF", path, "too high"))?,
    );
    let delay = ((6000.0 / per_minute.max(1e-3)).round() as u64).clamp(2, u16::MAX as u64) as u16;
    let mut bytes = Vec::new();
    {
        let mut enc = gif::Encoder::new(&mut bytes, gw, gh, &[]).map_err(|e| out_err("GIF", path, e))?;
        enc.set_repeat(gif::Repeat::Infinite).map_err(|e| out_err("GIF", path, e))?;
        for im in images {
            let im = im.resize_exact(w, h, filter(im.width(), w)).to_rgb8();
            let mut frame = gif::Frame::from_rgb_speed(gw, gh, im.as_raw(), 10);
            frame.delay = delay;
            enc.write_frame(&frame).map_err(|e| out_err("GIF", path, e))?;
        }
    }
    write_atomic(path, &bytes)
}

/// Copies a picture file (bytes unchanged) straight to its name.
pub fn copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to).map(|_| ()).map_err(|e| Error::io("cannot copy a cluster member to", to, e))
}

/// The 2-D map of a heatmap tensor of shape `[C, H, W]` (summed over channels) or `[H, W]`;
/// `None` for other shapes (dense layers).
pub fn spatial(shape: &[usize], values: &[f32]) -> Option<(usize, usize, Vec<f32>)> {
    let (c, h, w) = channels_height_width(shape)?;
    if values.len() != c * h * w {
        return None;
    }
    let mut map = vec![0.0f32; h * w];
    for ch in values.chunks_exact(h * w) {
        map.iter_mut().zip(ch).for_each(|(m, v)| *m += v);
    }
    Some((h, w, map))
}

/// `(channels, height, width)` of a heatmap shape `[C, H, W]` or `[H, W]` with a non-empty plane;
/// `None` for other shapes (dense layers).
pub fn channels_height_width(shape: &[usize]) -> Option<(usize, usize, usize)> {
    let (c, h, w) = match shape {
        [c, h, w] => (*c, *h, *w),
        [h, w] => (1, *h, *w),
        _ => return None,
    };
    (h * w > 0).then_some((c, h, w))
}

/// The diverging colour of `v ∈ [−1, 1]`: blue, white at zero, red.
fn diverging(v: f32) -> [f32; 3] {
    let v = v.clamp(-1.0, 1.0);
    if v >= 0.0 {
        [1.0, 1.0 - v, 1.0 - v]
    } else {
        [1.0 + v, 1.0 + v, 1.0]
    }
}

/// Bilinear sample of an `h × w` map at output pixel `(x, y)` of an `ow × oh` picture.
fn sample(map: &[f32], h: usize, w: usize, x: u32, y: u32, ow: u32, oh: u32) -> f32 {
    let fx = ((x as f32 + 0.5) * w as f32 / ow as f32 - 0.5).clamp(0.0, (w - 1) as f32);
    let fy = ((y as f32 + 0.5) * h as f32 / oh as f32 - 0.5).clamp(0.0, (h - 1) as f32);
    let (x0, y0) = (fx.floor() as usize, fy.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
    let (tx, ty) = (fx - x0 as f32, fy - y0 as f32);
    let at = |yy: usize, xx: usize| map[yy * w + xx];
    (at(y0, x0) * (1.0 - tx) + at(y0, x1) * tx) * (1.0 - ty) + (at(y1, x0) * (1.0 - tx) + at(y1, x1) * tx) * ty
}

fn scale_of(map: &[f32]) -> f32 {
    let m = map.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    if m > 0.0 {
        m
    } else {
        1.0
    }
}

/// Writes `image` in grey with the `h × w` relevance `map` over it as a PNG, the colour scale
/// symmetric around zero (±max |relevance| of this map).
pub fn write_overlay(path: &Path, im: &DynamicImage, map: &[f32], h: usize, w: usize, max_side: u32) -> Result<()> {
    let (ow, oh) = fit(im.width(), im.height(), max_side);
    let grey: GrayImage = im.resize_exact(ow, oh, filter(im.width(), ow)).to_luma8();
    let s = scale_of(map);
    let out = RgbImage::from_fn(ow, oh, |x, y| {
        let v = sample(map, h, w, x, y, ow, oh) / s;
        let g = f32::from(grey.get_pixel(x, y)[0]) / 255.0;
        let c = diverging(v);
        let a = 0.8 * v.abs().min(1.0);
        let px = |k: usize| (255.0 * ((1.0 - a) * g + a * c[k])).round().clamp(0.0, 255.0) as u8;
        Rgb([px(0), px(1), px(2)])
    });
    write_png(path, &out)
}

/// Writes the `h × w` map alone in the diverging palette (e.g. a cluster's mean heatmap).
pub fn write_map(path: &Path, map: &[f32], h: usize, w: usize) -> Result<()> {
    let (ow, oh) = fit(w as u32, h as u32, 512);
    let s = scale_of(map);
    let out = RgbImage::from_fn(ow, oh, |x, y| {
        let c = diverging(sample(map, h, w, x, y, ow, oh) / s);
        Rgb(c.map(|v| (255.0 * v).round() as u8))
    });
    write_png(path, &out)
}

/// The `h × w` map as RGBA PNG bytes, for stacking over its image: red where relevance is positive,
/// blue where negative, opacity proportional to |relevance| (scale ±max |relevance| of this map).
/// Native resolution: the viewer scales it to the image.
pub fn heatmap_png(map: &[f32], h: usize, w: usize) -> Vec<u8> {
    let s = scale_of(map);
    let out = RgbaImage::from_fn(w as u32, h as u32, |x, y| {
        let v = (map[y as usize * w + x as usize] / s).clamp(-1.0, 1.0);
        let a = (255.0 * v.abs()).round() as u8;
        if v >= 0.0 {
            Rgba([220, 30, 30, a])
        } else {
            Rgba([30, 60, 220, a])
        }
    });
    png_bytes(&DynamicImage::ImageRgba8(out))
}

/// A PNG thumbnail of the image at `path`, its longest side at most `max_side` pixels (smaller
/// images keep their size).
pub fn thumbnail_png(path: &Path, max_side: u32) -> Result<Vec<u8>> {
    let im = open(path)?;
    let (w, h) = fit(im.width(), im.height(), max_side);
    let im = if (w, h) == (im.width(), im.height()) { im } else { im.resize_exact(w, h, filter(im.width(), w)) };
    Ok(png_bytes(&im))
}

fn png_bytes(im: &DynamicImage) -> Vec<u8> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    // Encoding into memory fails only for unsupported pixel types, which these are not.
    let _ = im.write_to(&mut bytes, image::ImageFormat::Png);
    bytes.into_inner()
}

fn write_png(path: &Path, im: &RgbImage) -> Result<()> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    im.write_to(&mut bytes, image::ImageFormat::Png).map_err(|e| out_err("PNG", path, e))?;
    write_atomic(path, bytes.get_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grey(v: u8) -> DynamicImage {
        DynamicImage::ImageLuma8(GrayImage::from_pixel(28, 28, image::Luma([v])))
    }

    #[test]
    fn gif_has_one_frame_per_image_at_the_rate() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (grey(10), grey(200));
        let out = dir.path().join("c.gif");
        write_gif(&out, &[&a, &b, &a], 100.0, 256).unwrap();
        let mut opts = gif::DecodeOptions::new();
        opts.set_color_output(gif::ColorOutput::RGBA);
        let mut dec = opts.read_info(std::fs::File::open(&out).unwrap()).unwrap();
        assert_eq!((dec.width(), dec.height()), (112, 112), "28 px enlarged ×4");
        let mut frames = Vec::new();
        while let Some(f) = dec.read_next_frame().unwrap() {
            frames.push((f.delay, f.buffer[0]));
        }
        assert_eq!(frames.len(), 3);
        assert!(frames.iter().all(|(d, _)| *d == 60), "100 images per minute = 0.6 s");
        assert!(frames[0].1 < 50 && frames[1].1 > 150);
    }

    #[test]
    fn overlay_colours_follow_the_sign() {
        let dir = tempfile::tempdir().unwrap();
        let img = grey(128);
        // Left half positive, right half negative.
        let map: Vec<f32> = (0..4).flat_map(|_| [1.0, 1.0, -1.0, -1.0]).collect();
        let out = dir.path().join("o.png");
        write_overlay(&out, &img, &map, 4, 4, 256).unwrap();
        let o = image::open(&out).unwrap().to_rgb8();
        let (l, r) = (o.get_pixel(5, 50), o.get_pixel(106, 50));
        assert!(l[0] > l[2], "positive is red: {l:?}");
        assert!(r[2] > r[0], "negative is blue: {r:?}");
        assert_eq!(spatial(&[2, 1, 2], &[1.0, 2.0, 3.0, 4.0]), Some((1, 2, vec![4.0, 6.0])));
        assert_eq!(spatial(&[64], &[0.0; 64]), None);
        assert_eq!(channels_height_width(&[16, 7, 7]), Some((16, 7, 7)));
        assert_eq!(channels_height_width(&[5, 4]), Some((1, 5, 4)));
        assert_eq!(channels_height_width(&[3, 0, 4]), None);
    }
}
