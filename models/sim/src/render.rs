//! The renderer: an eye drawn from its parameters with 4 × 4 supersampling (anti-aliased edges),
//! then exposure, contrast, blur and sensor noise.

use crate::{Params, Rng};

/// Image side, in pixels.
pub const SIZE: usize = 64;

const SUB: usize = 4;

/// Where things are, in pixels.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Geometry {
    centre: (f32, f32),
    half_width: f32,
    upper: f32,
    lower: f32,
    iris: (f32, f32),
    pub(crate) pupil: (f32, f32),
    pub(crate) pupil_radius: f32,
    pub(crate) corners: [(f32, f32); 2],
    brow: f32,
    scale: (f32, f32),
}

impl Geometry {
    pub(crate) fn of(p: &Params) -> Geometry {
        let (sx, sy) = (p.head_yaw.to_radians().cos(), p.head_pitch.to_radians().cos());
        let centre = (32.0 + 12.0 * p.head_yaw.to_radians().sin(), 34.0 - 8.0 * p.head_pitch.to_radians().sin());
        let half_width = 22.0 * sx;
        let iris_centre = (
            centre.0 + 20.0 * p.gaze_yaw.to_radians().sin() * sx,
            centre.1 - 20.0 * p.gaze_pitch.to_radians().sin() * sy,
        );
        Geometry {
            centre,
            half_width,
            upper: 13.0 * sy * p.eyelid,
            lower: 7.0 * sy * p.eyelid,
            iris: (7.5 * sx, 7.5 * sy),
            pupil: iris_centre,
            pupil_radius: 3.0 * (sx + sy) / 2.0,
            corners: [(centre.0 - half_width, centre.1), (centre.0 + half_width, centre.1)],
            brow: centre.1 - 17.0 * sy,
            scale: (sx, sy),
        }
    }

    /// Grey level of the scene at `(x, y)` before exposure, blur and noise.
    fn shade(&self, p: &Params, x: f32, y: f32) -> f32 {
        let mut v = p.skin * (1.05 - 0.15 * y / SIZE as f32);
        // Eyebrow: a dark arc above the eye.
        let u = (x - self.centre.0) / (self.half_width * 1.15).max(1.0);
        if u.abs() < 1.0 {
            let brow_y = self.brow - 3.0 * self.scale.1 * (1.0 - u * u);
            if (y - brow_y).abs() < 2.2 * self.scale.1 {
                v *= 0.45;
            }
        }
        let u = (x - self.centre.0) / self.half_width.max(1.0);
        if u.abs() < 1.0 {
            let shape = 1.0 - u * u;
            let top = self.centre.1 - self.upper * shape;
            let bottom = self.centre.1 + self.lower * shape;
            if y > top && y < bottom {
                v = 0.9;
                let (ix, iy) = ((x - self.pupil.0) / self.iris.0, (y - self.pupil.1) / self.iris.1);
                let r = (ix * ix + iy * iy).sqrt();
                if r < 1.0 {
                    v = 0.32 + 0.12 * r;
                    let pr = self.pupil_radius / self.iris.0.max(self.iris.1);
                    if r < pr {
                        v = 0.04;
                    }
                }
            } else if y <= top && y > top - 1.4 {
                v = 0.12; // lash line
            }
        }
        // Glare: a bright disc with a soft edge.
        if p.glare > 0.0 {
            let d = ((x - p.glare_x).powi(2) + (y - p.glare_y).powi(2)).sqrt();
            if d < p.glare_radius {
                v += p.glare * (1.0 - d / p.glare_radius).sqrt();
            }
        }
        v.min(1.0)
    }
}

fn blur(img: &mut [f32], sigma: f32) {
    if sigma < 0.05 {
        return;
    }
    let radius = (3.0 * sigma).ceil() as isize;
    let kernel: Vec<f32> = (-radius..=radius).map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp()).collect();
    let total: f32 = kernel.iter().sum();
    let n = SIZE as isize;
    let mut tmp = vec![0.0f32; img.len()];
    for pass in 0..2 {
        let (src, dst): (&[f32], &mut [f32]) = if pass == 0 { (img, &mut tmp) } else { (&tmp, img) };
        let src = src.to_vec();
        for y in 0..n {
            for x in 0..n {
                let mut acc = 0.0;
                for (k, w) in kernel.iter().enumerate() {
                    let o = k as isize - radius;
                    let (sx, sy) = if pass == 0 { ((x + o).clamp(0, n - 1), y) } else { (x, (y + o).clamp(0, n - 1)) };
                    acc += w * src[(sy * n + sx) as usize];
                }
                dst[(y * n + x) as usize] = acc / total;
            }
        }
    }
}

/// Renders `p` as a `SIZE × SIZE` grayscale image, row-major.
pub fn render(p: &Params) -> Vec<u8> {
    let g = Geometry::of(p);
    let mut img = vec![0.0f32; SIZE * SIZE];
    for y in 0..SIZE {
        for x in 0..SIZE {
            let mut acc = 0.0;
            for sy in 0..SUB {
                for sx in 0..SUB {
                    let fx = x as f32 + (sx as f32 + 0.5) / SUB as f32;
                    let fy = y as f32 + (sy as f32 + 0.5) / SUB as f32;
                    acc += g.shade(p, fx, fy);
                }
            }
            img[y * SIZE + x] = acc / (SUB * SUB) as f32;
        }
    }
    blur(&mut img, p.blur);
    let mut rng = Rng::new(p.noise_seed);
    img.iter()
        .map(|&v| {
            let v = ((v - 0.5) * p.contrast + 0.5) * p.exposure + p.noise * rng.normal();
            (v.clamp(0.0, 1.0) * 255.0).round() as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{params_of, Causes, SplitId};

    #[test]
    fn same_parameters_same_pixels() {
        let p = params_of(3, SplitId::Test, 5, Causes::Rare);
        assert_eq!(render(&p), render(&p));
    }

    #[test]
    fn the_pupil_is_dark_and_the_sclera_bright_in_a_clean_open_eye() {
        let mut p = params_of(0, SplitId::Train, 1, Causes::Rare);
        (p.eyelid, p.head_yaw, p.head_pitch, p.exposure, p.contrast) = (1.0, 0.0, 0.0, 1.0, 1.0);
        (p.glare, p.blur, p.noise, p.gaze_yaw, p.gaze_pitch) = (0.0, 0.0, 0.0, 0.0, 0.0);
        let img = render(&p);
        let (px, py) = (p.landmarks()[0] as usize, p.landmarks()[1] as usize);
        assert!(img[py * SIZE + px] < 30, "pupil");
        let sclera_x = px + 13;
        assert!(img[py * SIZE + sclera_x] > 200, "sclera");
        // A nearly closed eye hides the pupil: almost no pupil-dark pixels are left.
        let pupil_pixels = |img: &[u8]| img.iter().filter(|&&v| v < 20).count();
        assert!(pupil_pixels(&img) >= 8, "{}", pupil_pixels(&img));
        p.eyelid = 0.05;
        let closed = pupil_pixels(&render(&p));
        assert!(closed * 3 <= pupil_pixels(&img), "{closed}");
    }
}
