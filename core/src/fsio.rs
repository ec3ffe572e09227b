//! Files in and out. Output is atomic: a file is written beside its destination and renamed into
//! place, so an interrupted run never leaves a half-written file under the final name. Input is
//! checked before it is opened: every file hudd reads goes through [`open`], [`read`] or
//! [`read_to_string`], which refuse what is not a regular file (a named pipe would block the
//! reader, a device such as `/dev/zero` never ends) and a file larger than its kind can be.

use std::io::{Read, Write};
use std::path::Path;

use crate::error::{Error, Result};

/// Writes `bytes` to `path` atomically (temporary file in the same folder, then rename), creating
/// the parent folders.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_renamed(path, bytes, true)
}

/// Writes `value` as pretty JSON with a final newline to `path`, atomically (`what` names the
/// file in errors: `"run record"`).
pub fn write_json<T: serde::Serialize>(path: &Path, what: &'static str, value: &T) -> Result<()> {
    let mut json = serde_json::to_vec_pretty(value).map_err(|e| Error::Output {
        what,
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    json.push(b'\n');
    write_atomic(path, &json)
}

/// As [`write_atomic`] without forcing the data to disk first: for bulk files (pictures) of a
/// folder whose completion is marked by another file written with [`write_atomic`] afterwards.
pub fn write_atomic_unsynced(path: &Path, bytes: &[u8]) -> Result<()> {
    write_renamed(path, bytes, false)
}

/// Whether `a` and `b` name the same file (through links, `.`/`..` and, on Unix, hard links);
/// a path that does not exist yet is compared through its deepest existing folder.
pub fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    if let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) {
        use std::os::unix::fs::MetadataExt;
        return (x.dev(), x.ino()) == (y.dev(), y.ino());
    }
    matches!((resolve(a), resolve(b)), (Some(x), Some(y)) if x == y)
}

/// Whether `path` (existing or not) lies at or under the folder `dir`, through links and `.`/`..`.
/// A folder that does not exist holds nothing.
pub fn is_inside(path: &Path, dir: &Path) -> bool {
    match (resolve(path), resolve(dir)) {
        (Some(path), Some(dir)) => path.starts_with(dir),
        _ => false,
    }
}

/// `path` with its deepest existing ancestor resolved (links, `.`/`..`) and the rest appended.
fn resolve(path: &Path) -> Option<std::path::PathBuf> {
    let mut rest = Vec::new();
    let mut at = path;
    let resolved = loop {
        if let Ok(c) = at.canonicalize() {
            break c;
        }
        let (parent, name) = (at.parent()?, at.file_name()?);
        rest.push(name.to_os_string());
        at = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
    };
    Some(rest.iter().rev().fold(resolved, |p, n| p.join(n)))
}

fn write_renamed(path: &Path, bytes: &[u8], sync: bool) -> Result<()> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io("cannot create folder", parent, e))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        if sync {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io("cannot write file", path, e)
    })
}

/// Removes the folder `dir` and everything in it, when it exists; `action` says what failed.
pub fn remove_dir_if_exists(dir: &Path, action: &'static str) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(action, dir, e)),
        _ => Ok(()),
    }
}

/// The most bytes an ONNX file may hold: protobuf's 2 GiB limit (larger models keep their weights
/// in external files beside it).
pub const MODEL_LIMIT: u64 = 2 << 30;
/// The most bytes an image file may hold.
pub const IMAGE_LIMIT: u64 = 1 << 30;
/// The most bytes any other file hudd reads may hold (a configuration, a CSV, a JSON record, a
/// `.npy` of heatmaps, an external weights file).
pub const FILE_LIMIT: u64 = 1 << 40;

/// Checks, before anything opens it, that `path` is a regular file (links followed) of at most
/// `limit` bytes, and returns its size. The error says what it is instead.
pub fn check_regular(path: &Path, limit: u64) -> std::io::Result<u64> {
    let meta = std::fs::metadata(path)?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() { "a folder" } else { special_kind(&kind) };
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("not a regular file ({what}); hudd reads only regular files"),
        ));
    }
    if meta.len() > limit {
        return Err(too_large(meta.len(), limit));
    }
    Ok(meta.len())
}

fn too_large(bytes: u64, limit: u64) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("{bytes} bytes, more than a file of this kind can be ({limit} at most)"),
    )
}

#[cfg(unix)]
fn special_kind(kind: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_fifo() {
        "a named pipe"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

#[cfg(not(unix))]
fn special_kind(_: &std::fs::FileType) -> &'static str {
    "not a file"
}

/// Opens `path` for reading after [`check_regular`] with [`FILE_LIMIT`].
pub fn open(path: impl AsRef<Path>) -> std::io::Result<std::fs::File> {
    let path = path.as_ref();
    check_regular(path, FILE_LIMIT)?;
    std::fs::File::open(path)
}

/// Reads `path` whole after [`check_regular`] with `limit`; a file that grows past `limit` while
/// it is read is refused too.
pub fn read(path: impl AsRef<Path>, limit: u64) -> std::io::Result<Vec<u8>> {
    let path = path.as_ref();
    let len = check_regular(path, limit)?;
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64, limit));
    }
    Ok(bytes)
}

/// [`read`] with [`FILE_LIMIT`], as UTF-8 text.
pub fn read_to_string(path: impl AsRef<Path>) -> std::io::Result<String> {
    String::from_utf8(read(path, FILE_LIMIT)?)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "stream did not contain valid UTF-8"))
}

/// A CSV reader of `path` (headers on), opened by [`open`].
pub fn csv_reader(path: impl AsRef<Path>) -> std::io::Result<csv::Reader<std::fs::File>> {
    Ok(csv::Reader::from_reader(open(path)?))
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex SHA-256 of a file, read in chunks.
pub fn sha256_file(path: &Path) -> Result<String> {
    use sha2::Digest;
    use std::io::Read;
    let mut file = open(path).map_err(|e| Error::io("cannot open", path, e))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io("cannot read", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_leaves_no_temporary_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a/b/out.txt");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn special_and_oversized_files_are_refused_before_they_are_opened() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("x.png");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        // Opening a named pipe for reading would block until a writer came: refused instead.
        let e = read(&fifo, IMAGE_LIMIT).unwrap_err();
        assert!(e.to_string().contains("named pipe"), "{e}");
        assert!(open(&fifo).unwrap_err().to_string().contains("not a regular file"));
        let e = read(Path::new("/dev/zero"), MODEL_LIMIT).unwrap_err();
        assert!(e.to_string().contains("a device"), "{e}");
        assert!(read_to_string(d.path()).unwrap_err().to_string().contains("a folder"));
        let big = d.path().join("big");
        std::fs::write(&big, [0u8; 11]).unwrap();
        let e = read(&big, 10).unwrap_err();
        assert!(e.to_string().contains("11 bytes"), "{e}");
        assert_eq!(read(&big, 11).unwrap().len(), 11);
        assert!(sha256_file(&fifo).is_err(), "hashing refuses a pipe too");
    }

    #[test]
    fn inside_resolves_paths_that_do_not_exist_yet() {
        let d = tempfile::tempdir().unwrap();
        let run = d.path().join("run");
        std::fs::create_dir_all(run.join("unsafe")).unwrap();
        assert!(is_inside(&run.join("unsafe/balanced.csv"), &run));
        assert!(is_inside(&run.join("new/folder/m.onnx"), &run));
        assert!(is_inside(&run.join("unsafe/../clusters.json"), &run));
        assert!(!is_inside(&run.join("../m.onnx"), &run));
        assert!(!is_inside(&d.path().join("runner/m.onnx"), &run), "a prefix of the name is not inside");
        assert!(is_inside(&run.join("retrain/m.onnx"), &run.join("retrain")), "a folder to be made");
        assert!(!is_inside(&run.join("retrainer/m.onnx"), &run.join("retrain")));
    }

    #[test]
    fn sha256_matches_the_fips_vector() {
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(sha256_hex(b"abc"), abc);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("abc");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(sha256_file(&p).unwrap(), abc);
    }
}
