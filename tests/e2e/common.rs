//! Helpers shared by the end-to-end tests: paths, running `hudd`, reading `.npy` reference files.

use std::path::{Path, PathBuf};
use std::process::Output;

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub fn fixtures() -> PathBuf {
    root().join("tests/fixtures")
}

/// A path as a command-line argument.
pub fn arg(p: &Path) -> String {
    p.to_str().expect("UTF-8 path").to_string()
}

pub fn fmnist_model() -> PathBuf {
    root().join("models/fashion-mnist/fmnist_cnn.onnx")
}

pub fn fmnist_config() -> PathBuf {
    root().join("models/fashion-mnist/hudd.toml")
}

pub fn fmnist_data() -> PathBuf {
    fixtures().join("fmnist")
}

/// `hudd demo --size small` (run folder and bundle, retrained and compared), made once per test
/// process and shared: tests only read it.
pub fn small_demo() -> &'static Path {
    static DEMO: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DEMO.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("small-demo");
        if out.exists() {
            std::fs::remove_dir_all(&out).unwrap();
        }
        let o = hudd(&["demo", "--size", "small", "-o", &arg(&out), "-q"]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stdout(&o).contains("report:"), "{}", stdout(&o));
        std::fs::write(out.join("stdout.txt"), o.stdout).unwrap();
        out
    })
}

/// Runs the `hudd` binary.
pub fn hudd<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_hudd")).args(args).output().expect("hudd runs")
}

/// Runs the `hudd` binary and fails the test if it has not finished within `seconds` (it is
/// killed then): for inputs that once made it hang.
pub fn hudd_within<S: AsRef<std::ffi::OsStr>>(args: &[S], seconds: u64) -> Output {
    let logs = tempfile::tempdir().unwrap();
    let (out, err) = (logs.path().join("stdout"), logs.path().join("stderr"));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hudd"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("hudd runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            panic!("hudd did not finish within {seconds} s (it hangs): {}", std::fs::read_to_string(&err).unwrap());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    Output { status, stdout: std::fs::read(&out).unwrap(), stderr: std::fs::read(&err).unwrap() }
}

/// `hudd analyze` of `data` into `out` with the Fashion-MNIST fixture model and configuration,
/// quietly, and `extra` arguments.
pub fn analyze_args(data: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> =
        ["analyze", "-m", &arg(&fmnist_model()), "-c", &arg(&fmnist_config())].iter().map(|s| s.to_string()).collect();
    args.extend(["-d".into(), arg(data), "-o".into(), arg(out), "-q".into()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// The Fashion-MNIST fixture model's analysis of `data` and its unsafe set assigned, in a
/// temporary folder: (the folder, the run inside it).
pub fn assigned_run(data: &Path) -> (tempfile::TempDir, PathBuf) {
    let work = tempfile::tempdir().unwrap();
    let run = work.path().join("run");
    let (model, config, data) = (arg(&fmnist_model()), arg(&fmnist_config()), arg(data));
    let o = hudd(&["analyze", "-m", &model, "-c", &config, "-d", &data, "-o", &arg(&run), "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = hudd(&["assign", "--run", &arg(&run), "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    (work, run)
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Reads a little-endian float32, C-order `.npy` file (what the fixture scripts write).
pub fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..6], b"\x93NUMPY", "not an npy file: {}", path.display());
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
    };
    let header = std::str::from_utf8(&bytes[start..start + header_len]).unwrap();
    assert!(header.contains("'descr': '<f4'"), "{header}");
    assert!(header.contains("'fortran_order': False"), "{header}");
    let shape_text = header.split("'shape': (").nth(1).unwrap().split(')').next().unwrap();
    let shape: Vec<usize> = shape_text.split(',').filter_map(|s| s.trim().parse().ok()).collect();
    let data: Vec<f32> =
        bytes[start + header_len..].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    assert_eq!(data.len(), shape.iter().product::<usize>());
    (shape, data)
}

/// Largest `|a - b| / max(1, |b|)`: absolute error for small values, relative for large ones.
pub fn max_rel_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs() / y.abs().max(1.0)).fold(0.0, f32::max)
}

/// Every file under `root`, recursively, with its path relative to `root` (`/` separators), sorted.
pub fn files_under(root: &Path) -> Vec<(String, PathBuf)> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push((path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/"), path));
            }
        }
    }
    files.sort();
    files
}

/// Copies a folder tree.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.path().is_dir() {
            copy_tree(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

/// The fixture's reference facts (written by models/scripts/make_fashion_mnist.py).
pub fn reference() -> serde_json::Value {
    let text = std::fs::read_to_string(fmnist_data().join("reference/reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Asserts that `hudd` failed cleanly: exit status 1, no panic, and a message holding every needle.
pub fn assert_clean_failure(out: &Output, needles: &[&str]) {
    assert_eq!(out.status.code(), Some(1), "exit 1 expected; stderr:\n{}", stderr(out));
    let err = stderr(out);
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "message should mention `{n}`:\n{err}");
    }
}
