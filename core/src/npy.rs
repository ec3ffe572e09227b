//! NumPy `.npy` files (format version 1.0, little-endian float32, C order), written as a stream:
//! the header is written first with the full shape, rows are appended as batches finish, and the file
//! appears under its final name only when every row is there. When the number of rows is only known
//! at the end ([`NpyWriter::create_rows`]: at most so many), the header is rewritten in place with the
//! final count.
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("x.npy");
//! let mut w = hudd_core::npy::NpyWriter::create(&path, &[2, 3]).unwrap();
//! w.append(&[1.0, 2.0, 3.0]).unwrap();
//! w.append(&[4.0, 5.0, 6.0]).unwrap();
//! w.finish().unwrap();
//! let (shape, data) = hudd_core::npy::read_f32(&path).unwrap();
//! assert_eq!((shape, data[5]), (vec![2, 3], 6.0));
//! ```

use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The element type of an array file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Dtype {
    /// 32-bit floats (`<f4`): the values as computed.
    #[default]
    F32,
    /// 16-bit floats (`<f2`): half the bytes; values rounded to 11 significant bits (about 3
    /// decimal digits), read back widened to 32 bits.
    F16,
}

impl Dtype {
    /// The option's name.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::F16 => "f16",
        }
    }

    /// Bytes per value.
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 => 2,
        }
    }

    /// NumPy's type string.
    fn descr(self) -> &'static str {
        match self {
            Dtype::F32 => "<f4",
            Dtype::F16 => "<f2",
        }
    }

    /// Whether this is the default (what a file says when it says nothing).
    pub fn is_f32(&self) -> bool {
        *self == Dtype::F32
    }
}

impl std::fmt::Display for Dtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Values converted per write when storing f16.
const F16_PIECE: usize = 1 << 16;

/// `values` as little-endian bytes: the values' own memory on a little-endian machine (no copy:
/// the writes of `hudd heatmaps` are gigabytes), an encoded copy elsewhere.
fn le_bytes(values: &[f32]) -> std::borrow::Cow<'_, [u8]> {
    #[cfg(target_endian = "little")]
    {
        #[allow(unsafe_code)]
        // SAFETY: the slice covers exactly the memory of `values` (`size_of_val` bytes from its
        // start), which stays borrowed for the result's lifetime; `u8` needs no alignment and every
        // byte of an initialised `f32` is an initialised `u8`.
        let bytes = unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values)) };
        std::borrow::Cow::Borrowed(bytes)
    }
    #[cfg(not(target_endian = "little"))]
    {
        std::borrow::Cow::Owned(values.iter().flat_map(|v| v.to_le_bytes()).collect())
    }
}

/// Streams a float32 array to an `.npy` file.
#[derive(Debug)]
pub struct NpyWriter {
    path: PathBuf,
    tmp: PathBuf,
    out: BufWriter<std::fs::File>,
    shape: Vec<usize>,
    expected: usize,
    written: usize,
    /// Rows may end below `shape[0]` (the header is rewritten at the end).
    open_rows: bool,
    /// How values are stored.
    dtype: Dtype,
}

/// The header of `shape`. Its length depends on the row shape only (room is left for the longest
/// row count), so that a file's bytes do not depend on how its rows were gathered: a file written
/// with its count unknown ([`NpyWriter::create_rows`]) or from shards ([`concat_rows`]) equals the
/// one written at once.
fn header(shape: &[usize], dtype: Dtype) -> Vec<u8> {
    let mut widest = shape.to_vec();
    if let Some(rows) = widest.first_mut() {
        *rows = usize::MAX;
    }
    let length = header_of_length(&widest, dtype, 0).map(|h| h.len()).unwrap_or_default();
    header_of_length(shape, dtype, length).unwrap_or_default()
}

/// The header of `shape`, padded to `length` bytes in all (at least to the next multiple of 64);
/// `None` when it does not fit in `length`.
fn header_of_length(shape: &[usize], dtype: Dtype, length: usize) -> Option<Vec<u8>> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut h = format!("{{'descr': '{}', 'fortran_order': False, 'shape': {shape_text}, }}", dtype.descr());
    // Magic (6) + version (2) + length (2) + header + '\n' must be a multiple of 64.
    let total = 10 + h.len() + 1;
    let padded = total.div_ceil(64) * 64;
    if length > 0 && padded > length {
        return None;
    }
    h.push_str(&" ".repeat(padded.max(length) - total));
    h.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(h.len() as u16).to_le_bytes());
    bytes.extend_from_slice(h.as_bytes());
    Some(bytes)
}

impl NpyWriter {
    /// Starts `path` for a float32 array of `shape`.
    pub fn create(path: &Path, shape: &[usize]) -> Result<NpyWriter> {
        NpyWriter::create_as(path, shape, Dtype::F32)
    }

    /// Starts `path` for an array of `shape` stored as `dtype` (appended values are rounded to it).
    pub fn create_as(path: &Path, shape: &[usize], dtype: Dtype) -> Result<NpyWriter> {
        let parent = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(|e| Error::io("cannot create folder", parent, e))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
        let file = std::fs::File::create(&tmp).map_err(|e| Error::io("cannot create file", &tmp, e))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(&header(shape, dtype)).map_err(|e| Error::io("cannot write file", &tmp, e))?;
        Ok(NpyWriter {
            path: path.to_path_buf(),
            tmp,
            out,
            shape: shape.to_vec(),
            expected: shape.iter().product(),
            written: 0,
            open_rows: false,
            dtype,
        })
    }

    /// Starts `path` for at most `max_rows` rows of `row_shape`; [`finish`](Self::finish) records
    /// how many were appended (whole rows only). With `max_rows` rows the file is the same as
    /// [`create`](Self::create)'s.
    pub fn create_rows(path: &Path, max_rows: usize, row_shape: &[usize], dtype: Dtype) -> Result<NpyWriter> {
        let mut shape = vec![max_rows];
        shape.extend_from_slice(row_shape);
        let mut w = NpyWriter::create_as(path, &shape, dtype)?;
        w.open_rows = true;
        Ok(w)
    }

    /// Appends values in C order.
    pub fn append(&mut self, values: &[f32]) -> Result<()> {
        if self.written + values.len() > self.expected {
            return Err(Error::Output {
                what: "array",
                path: self.path.clone(),
                reason: "more values than the shape holds".into(),
            });
        }
        match self.dtype {
            Dtype::F32 => {
                self.out.write_all(&le_bytes(values)).map_err(|e| Error::io("cannot write file", &self.tmp, e))?
            }
            Dtype::F16 => {
                // Rounded to nearest in pieces through one small buffer.
                let mut bytes = Vec::with_capacity(2 * F16_PIECE);
                for piece in values.chunks(F16_PIECE) {
                    bytes.clear();
                    bytes.extend(piece.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()));
                    self.out.write_all(&bytes).map_err(|e| Error::io("cannot write file", &self.tmp, e))?;
                }
            }
        }
        self.written += values.len();
        Ok(())
    }

    /// Forces the values written so far to disk. A writer that calls it as it goes leaves the final
    /// sync of [`NpyWriter::finish`] little to wait for.
    pub fn sync(&mut self) -> Result<()> {
        self.out.flush().map_err(|e| Error::io("cannot write file", &self.tmp, e))?;
        self.out.get_ref().sync_data().map_err(|e| Error::io("cannot sync file", &self.tmp, e))
    }

    /// Appends `values` float32 values read as raw little-endian bytes from `from`.
    fn append_raw(&mut self, from: &mut impl Read, values: usize, source: &Path) -> Result<()> {
        if self.written + values > self.expected {
            return Err(Error::Output {
                what: "array",
                path: self.path.clone(),
                reason: "more values than the shape holds".into(),
            });
        }
        let want = (self.dtype.size() * values) as u64;
        let copied = std::io::copy(&mut from.take(want), &mut self.out)
            .map_err(|e| Error::io("cannot copy array data", source, e))?;
        if copied != want {
            return Err(Error::Output {
                what: "array",
                path: source.to_path_buf(),
                reason: "data length does not match the shape".into(),
            });
        }
        self.written += values;
        Ok(())
    }

    /// Checks that every value was written and moves the file to its final name.
    pub fn finish(mut self) -> Result<()> {
        let row: usize = self.shape[1..].iter().product();
        if self.open_rows && self.written < self.expected && row > 0 && self.written.is_multiple_of(row) {
            // Fewer rows than reserved: the header is rewritten with the count, padded to its length.
            let mut shape = self.shape.clone();
            shape[0] = self.written / row;
            let head = header(&shape, self.dtype);
            if head.len() != header(&self.shape, self.dtype).len() {
                return Err(Error::Output {
                    what: "array",
                    path: self.path.clone(),
                    reason: "the header does not fit its reserved space".into(),
                });
            }
            use std::io::{Seek, SeekFrom};
            self.out.flush().map_err(|e| Error::io("cannot write file", &self.tmp, e))?;
            let file = self.out.get_mut();
            file.seek(SeekFrom::Start(0)).map_err(|e| Error::io("cannot write file", &self.tmp, e))?;
            file.write_all(&head).map_err(|e| Error::io("cannot write file", &self.tmp, e))?;
            self.expected = self.written;
        }
        if self.written != self.expected {
            return Err(Error::Output {
                what: "array",
                path: self.path.clone(),
                reason: format!("{} of {} values written", self.written, self.expected),
            });
        }
        self.out.flush().map_err(|e| Error::io("cannot write file", &self.tmp, e))?;
        // On disk before it takes its final name: a file under its name is complete, even after a
        // power cut (and so is a folder whose index, written last, names it).
        self.out.get_ref().sync_all().map_err(|e| Error::io("cannot sync file", &self.tmp, e))?;
        std::fs::rename(&self.tmp, &self.path).map_err(|e| Error::io("cannot write file", &self.path, e))
    }
}

impl Drop for NpyWriter {
    fn drop(&mut self) {
        // Unfinished: leave nothing that looks like a result.
        if self.tmp.exists() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Opens a little-endian float32, C-order `.npy` file: its shape, and a reader at its first value.
fn open(path: &Path) -> Result<(Vec<usize>, Dtype, std::io::BufReader<std::fs::File>)> {
    let bad = |reason: &str| Error::Output { what: "array", path: path.to_path_buf(), reason: reason.into() };
    let io = |e| Error::io("cannot read file", path, e);
    let mut f = std::io::BufReader::new(crate::fsio::open(path).map_err(io)?);
    let mut lead = [0u8; 12];
    f.read_exact(&mut lead[..10]).map_err(|_| bad("not an .npy file"))?;
    if &lead[..6] != b"\x93NUMPY" {
        return Err(bad("not an .npy file"));
    }
    let len = match lead[6] {
        1 => u16::from_le_bytes([lead[8], lead[9]]) as usize,
        _ => {
            f.read_exact(&mut lead[10..12]).map_err(|_| bad("truncated header"))?;
            u32::from_le_bytes([lead[8], lead[9], lead[10], lead[11]]) as usize
        }
    };
    let mut header = vec![0u8; len];
    f.read_exact(&mut header).map_err(|_| bad("truncated header"))?;
    let header = std::str::from_utf8(&header).map_err(|_| bad("bad header"))?;
    let dtype = if header.contains("'<f4'") {
        Dtype::F32
    } else if header.contains("'<f2'") {
        Dtype::F16
    } else {
        return Err(bad("only little-endian float32 or float16 is read"));
    };
    if header.contains("'fortran_order': True") {
        return Err(bad("only C order is read"));
    }
    let shape_text =
        header.split("'shape': (").nth(1).and_then(|s| s.split(')').next()).ok_or_else(|| bad("no shape"))?;
    let shape: Vec<usize> = shape_text.split(',').filter_map(|s| s.trim().parse().ok()).collect();
    Ok((shape, dtype, f))
}

/// Reads a little-endian float32, C-order `.npy` file: its shape and values. The values are
/// decoded in chunks straight into their vector, so memory peaks at the array's size.
pub fn read_f32(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let bad = |reason: &str| Error::Output { what: "array", path: path.to_path_buf(), reason: reason.into() };
    let io = |e| Error::io("cannot read file", path, e);
    let (shape, dtype, mut f) = open(path)?;
    let n: usize = shape.iter().product();
    let size = dtype.size();
    let mut data: Vec<f32> = Vec::with_capacity(n);
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        let mut got = f.read(&mut chunk).map_err(io)?;
        if got == 0 {
            break;
        }
        if got % size != 0 {
            // Complete the last value of this read.
            let need = size - got % size;
            f.read_exact(&mut chunk[got..got + need]).map_err(|_| bad("data length does not match the shape"))?;
            got += need;
        }
        match dtype {
            Dtype::F32 => {
                data.extend(chunk[..got].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            }
            Dtype::F16 => {
                data.extend(chunk[..got].chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()))
            }
        }
        if data.len() > n {
            return Err(bad("data length does not match the shape"));
        }
    }
    if data.len() != n {
        return Err(bad("data length does not match the shape"));
    }
    Ok((shape, data))
}

/// Concatenates the rows of `inputs` (same row shape) into `out`, streaming (no file is held in
/// memory): the bytes equal those of one writer that appended every row in order.
pub fn concat_rows(inputs: &[PathBuf], out: &Path) -> Result<Vec<usize>> {
    let mut opened = Vec::with_capacity(inputs.len());
    let mut row_shape: Option<Vec<usize>> = None;
    let mut dtypes: Option<Dtype> = None;
    let mut rows = 0;
    for p in inputs {
        let (shape, dtype, f) = open(p)?;
        if dtypes.is_some_and(|d| d != dtype) {
            return Err(Error::Output {
                what: "array",
                path: p.clone(),
                reason: format!("{dtype} values, the other files hold {}", dtypes.unwrap_or_default()),
            });
        }
        dtypes = Some(dtype);
        let Some((&n, row)) = shape.split_first() else {
            return Err(Error::Output { what: "array", path: p.clone(), reason: "a scalar has no rows".into() });
        };
        match &row_shape {
            Some(r) if r.as_slice() != row => {
                return Err(Error::Output {
                    what: "array",
                    path: p.clone(),
                    reason: format!("rows of shape {row:?}, the other files have {r:?}"),
                })
            }
            _ => row_shape = Some(row.to_vec()),
        }
        rows += n;
        opened.push((p, n * row.iter().product::<usize>(), f));
    }
    let Some(row) = row_shape else {
        return Err(Error::Output { what: "array", path: out.to_path_buf(), reason: "no file to concatenate".into() });
    };
    let mut shape = vec![rows];
    shape.extend_from_slice(&row);
    let mut w = NpyWriter::create_as(out, &shape, dtypes.unwrap_or_default())?;
    for (p, values, mut f) in opened {
        w.append_raw(&mut f, values, p)?;
        let mut extra = [0u8; 1];
        if f.read(&mut extra).map_err(|e| Error::io("cannot read file", p, e))? != 0 {
            return Err(Error::Output {
                what: "array",
                path: p.clone(),
                reason: "data length does not match the shape".into(),
            });
        }
    }
    w.finish()?;
    Ok(shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_aligned_and_unfinished_files_vanish() {
        for shape in [vec![3], vec![2, 3, 4], vec![1000, 16, 28, 28]] {
            assert_eq!(header(&shape, Dtype::F32).len() % 64, 0);
            assert_eq!(header(&shape, Dtype::F16).len() % 64, 0);
        }
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.npy");
        let mut w = NpyWriter::create(&p, &[2, 2]).unwrap();
        w.append(&[1.0, 2.0]).unwrap();
        assert!(w.append(&[1.0, 2.0, 3.0]).is_err());
        drop(w);
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0, "no partial file left behind");
        let w = NpyWriter::create(&p, &[2]).unwrap();
        assert!(w.finish().is_err(), "finishing short is an error");
        assert!(!p.exists());
    }

    #[test]
    fn open_row_counts_are_rewritten_into_the_header() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a.npy"), d.path().join("b.npy"));
        // All rows: the same bytes as a writer that knew the count.
        let mut w = NpyWriter::create_rows(&a, 2, &[3], Dtype::F32).unwrap();
        w.append(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        w.finish().unwrap();
        let mut w = NpyWriter::create(&b, &[2, 3]).unwrap();
        w.append(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        w.finish().unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        // Fewer rows (1000 → 7: fewer digits): a valid file of 7 rows.
        let mut w = NpyWriter::create_rows(&a, 1000, &[2, 2], Dtype::F32).unwrap();
        let values: Vec<f32> = (0..28).map(|i| i as f32).collect();
        w.append(&values).unwrap();
        w.finish().unwrap();
        assert_eq!(read_f32(&a).unwrap(), (vec![7, 2, 2], values.clone()));
        let mut w = NpyWriter::create(&b, &[7, 2, 2]).unwrap();
        w.append(&values).unwrap();
        w.finish().unwrap();
        assert_eq!(
            std::fs::read(&a).unwrap(),
            std::fs::read(&b).unwrap(),
            "the count does not change the header length"
        );
        // A partial row is an error.
        let mut w = NpyWriter::create_rows(&a, 3, &[2], Dtype::F32).unwrap();
        w.append(&[1.0]).unwrap();
        assert!(w.finish().is_err());
    }

    #[test]
    fn concatenated_rows_equal_one_writer() {
        let d = tempfile::tempdir().unwrap();
        let values: Vec<f32> = (0..60).map(|i| i as f32 - 7.5).collect();
        let whole = d.path().join("whole.npy");
        let mut w = NpyWriter::create(&whole, &[10, 2, 3]).unwrap();
        w.append(&values).unwrap();
        w.finish().unwrap();
        let mut parts = Vec::new();
        for (k, rows) in [(0usize, 0..3usize), (1, 3..3), (2, 3..10)] {
            let p = d.path().join(format!("part{k}.npy"));
            let mut w = NpyWriter::create(&p, &[rows.len(), 2, 3]).unwrap();
            w.append(&values[rows.start * 6..rows.end * 6]).unwrap();
            w.finish().unwrap();
            parts.push(p);
        }
        let merged = d.path().join("merged.npy");
        assert_eq!(concat_rows(&parts, &merged).unwrap(), [10, 2, 3]);
        assert_eq!(std::fs::read(&merged).unwrap(), std::fs::read(&whole).unwrap());
        // Rows of another shape are refused.
        let other = d.path().join("other.npy");
        let mut w = NpyWriter::create(&other, &[1, 6]).unwrap();
        w.append(&values[..6]).unwrap();
        w.finish().unwrap();
        assert!(concat_rows(&[parts[0].clone(), other], &merged).is_err());
    }

    #[test]
    fn reads_what_it_writes_and_rejects_bad_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.npy");
        // Larger than one read chunk, so values straddle chunk borders.
        let values: Vec<f32> = (0..700_007).map(|i| i as f32 * 0.5).collect();
        let mut w = NpyWriter::create(&p, &[7, 100_001]).unwrap();
        w.append(&values).unwrap();
        w.finish().unwrap();
        assert_eq!(read_f32(&p).unwrap(), (vec![7, 100_001], values));
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 2]).unwrap();
        assert!(read_f32(&p).is_err(), "truncated data");
        std::fs::write(&p, [&bytes[..], &[0u8; 4]].concat()).unwrap();
        assert!(read_f32(&p).is_err(), "extra data");
        std::fs::write(&p, b"not numpy at all").unwrap();
        assert!(read_f32(&p).is_err());
    }

    #[test]
    fn half_floats_are_written_rounded_and_read_back_widened() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a.npy"), d.path().join("b.npy"));
        // Odd length past one read chunk (values straddle its border), and values f16 cannot hold
        // exactly: 1/3 rounds, 1e-8 flushes to zero, 70000 overflows to infinity.
        let mut values: Vec<f32> = (0..(1 << 19) + 3).map(|i| (i % 1000) as f32 / 3.0 - 100.0).collect();
        values.extend([1e-8, 70000.0, -0.0]);
        let mut w = NpyWriter::create_rows(&a, values.len(), &[], Dtype::F16).unwrap();
        w.append(&values).unwrap();
        w.finish().unwrap();
        let bytes = std::fs::read(&a).unwrap();
        assert!(std::str::from_utf8(&bytes[10..80]).unwrap().contains("'descr': '<f2'"));
        assert_eq!(bytes.len(), header(&[values.len()], Dtype::F16).len() + 2 * values.len(), "two bytes a value");
        let (shape, back) = read_f32(&a).unwrap();
        assert_eq!(shape, vec![values.len()]);
        let rounded: Vec<f32> = values.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
        assert_eq!(back, rounded);
        assert!((back[1] - values[1]).abs() <= 1e-3 * values[1].abs() && back[1] != values[1]);
        assert_eq!(back[back.len() - 3..], [0.0, f32::INFINITY, -0.0]);
        // Concatenation keeps the type; files of another type are refused.
        let (p0, p1) = (d.path().join("p0.npy"), d.path().join("p1.npy"));
        for (p, rows) in [(&p0, 0..2), (&p1, 2..5)] {
            let mut w = NpyWriter::create_as(p, &[rows.len(), 2], Dtype::F16).unwrap();
            w.append(&values[rows.start * 2..rows.end * 2]).unwrap();
            w.finish().unwrap();
        }
        assert_eq!(concat_rows(&[p0.clone(), p1], &b).unwrap(), [5, 2]);
        assert_eq!(read_f32(&b).unwrap().1, rounded[..10]);
        let mut w = NpyWriter::create(&a, &[1, 2]).unwrap();
        w.append(&values[..2]).unwrap();
        w.finish().unwrap();
        let err = concat_rows(&[p0, a], &b).unwrap_err().to_string();
        assert!(err.contains("f32 values, the other files hold f16"), "{err}");
    }
}
