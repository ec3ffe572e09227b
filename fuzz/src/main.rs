//! `hudd-fuzz`: runs the mutation fuzzer (see the library) on one target or all.
//!
//! ```text
//! hudd-fuzz TARGET|all [--runs N] [--seconds S] [--seed S] [--start I] [--crashes DIR]
//! hudd-fuzz list
//! hudd-fuzz TARGET --emit I [--seed S] > input.bin      write input I out again
//! ```
//! A panic is recorded (the input saved to the crashes folder, `fuzz/crashes/` by default) and the
//! run goes on; an allocation over 1 GiB stops the process at once, naming the input. Exit status 1
//! when anything failed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hudd_fuzz::{corpus_dir, execute, Mutator, Target, Workspace};

/// The largest single allocation a reader may make.
const LIMIT: usize = 1 << 30;

/// The input being executed (for the allocation guard's message): target index + 1, and `i`.
static CURRENT_TARGET: AtomicUsize = AtomicUsize::new(0);
static CURRENT_INPUT: AtomicU64 = AtomicU64::new(0);
/// The largest allocation seen while executing inputs.
static LARGEST: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, refusing (and reporting) any allocation over [`LIMIT`].
struct Guard;

impl Guard {
    fn check(size: usize) {
        LARGEST.fetch_max(size, Ordering::Relaxed);
        if size > LIMIT {
            // No allocation from here on: the message is formatted on the stack.
            let mut buf = [0u8; 256];
            let mut cursor = std::io::Cursor::new(&mut buf[..]);
            let target = CURRENT_TARGET.load(Ordering::Relaxed);
            let name = Target::ALL.get(target.wrapping_sub(1)).map_or("?", |t| t.name());
            let i = CURRENT_INPUT.load(Ordering::Relaxed);
            let _ = write!(
                cursor,
                "\nhudd-fuzz: an allocation of {size} bytes (over 1 GiB) on input {i} of target {name}; \
                 write it out with `hudd-fuzz {name} --emit {i}`\n"
            );
            let n = cursor.position() as usize;
            let _ = std::io::stderr().write_all(&buf[..n]);
            std::process::abort();
        }
    }
}

#[allow(unsafe_code)] // a global allocator is an unsafe trait; this one only forwards to System
unsafe impl GlobalAlloc for Guard {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Guard::check(layout.size());
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Guard::check(layout.size());
        // SAFETY: as `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Guard::check(new_size);
        // SAFETY: `ptr` came from `System` with this layout; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Guard = Guard;

struct Args {
    targets: Vec<Target>,
    runs: Option<u64>,
    seconds: Option<f64>,
    seed: u64,
    start: u64,
    emit: Option<u64>,
    crashes: PathBuf,
}

const USAGE: &str =
    "usage: hudd-fuzz TARGET|all [--runs N] [--seconds S] [--seed S] [--start I] [--crashes DIR]\n       \
                     hudd-fuzz TARGET --emit I [--seed S]\n       hudd-fuzz list   (the targets, one per line)\n\
                     targets: onnx, image, manifest, labels, report";

fn parse() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let first = it.next().ok_or("no target")?;
    if first == "list" {
        for t in Target::ALL {
            println!("{}", t.name());
        }
        std::process::exit(0);
    }
    let targets = match first.as_str() {
        "all" => Target::ALL.to_vec(),
        name => vec![Target::from_name(name).ok_or_else(|| format!("unknown target `{name}`"))?],
    };
    let mut args = Args {
        targets,
        runs: None,
        seconds: None,
        seed: 0,
        start: 0,
        emit: None,
        crashes: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crashes"),
    };
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| v.parse::<u64>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--runs" => args.runs = Some(number(value()?)?),
            "--seconds" => args.seconds = Some(value()?.parse().map_err(|e| format!("--seconds: {e}"))?),
            "--seed" => args.seed = number(value()?)?,
            "--start" => args.start = number(value()?)?,
            "--emit" => args.emit = Some(number(value()?)?),
            "--crashes" => args.crashes = PathBuf::from(value()?),
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    if args.emit.is_some() && args.targets.len() != 1 {
        return Err("--emit needs one target".into());
    }
    Ok(args)
}

fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("hudd-fuzz: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let ws = match Workspace::new() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("hudd-fuzz: cannot create a scratch folder: {e}");
            std::process::exit(1);
        }
    };
    // Panics are the findings: reported once per input, not printed by the default hook.
    let last_panic = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = last_panic.clone();
    std::panic::set_hook(Box::new(move |info| {
        if let Ok(mut s) = sink.lock() {
            *s = info.to_string();
        }
    }));
    let mut failed = false;
    for target in &args.targets {
        let mutator = match Mutator::from_folder(*target, &corpus_dir(*target)) {
            Ok(m) => m,
            Err(e) => {
                eprintln!(
                    "hudd-fuzz: {}: cannot read the corpus {}: {e}",
                    target.name(),
                    corpus_dir(*target).display()
                );
                std::process::exit(1);
            }
        };
        if let Some(i) = args.emit {
            let _ = std::io::stdout().write_all(&mutator.input(args.seed, i));
            return;
        }
        failed |= fuzz(*target, &mutator, &args, &ws, &last_panic);
    }
    if failed {
        std::process::exit(1);
    }
}

/// Runs one target; returns whether any input failed.
fn fuzz(target: Target, mutator: &Mutator, args: &Args, ws: &Workspace, last_panic: &std::sync::Mutex<String>) -> bool {
    let index = Target::ALL.iter().position(|t| *t == target).unwrap_or(0) + 1;
    let deadline = args.seconds.map(|s| Instant::now() + Duration::from_secs_f64(s));
    let runs = args.runs.unwrap_or(if deadline.is_some() { u64::MAX } else { 1_000_000 });
    let start = Instant::now();
    let (mut done, mut panics, mut slowest) = (0u64, 0u64, (0.0f64, 0u64));
    LARGEST.store(0, Ordering::Relaxed);
    let mut last_report = Instant::now();
    while done < runs && deadline.is_none_or(|d| Instant::now() < d) {
        let i = args.start + done;
        let input = mutator.input(args.seed, i);
        CURRENT_TARGET.store(index, Ordering::Relaxed);
        CURRENT_INPUT.store(i, Ordering::Relaxed);
        let t = Instant::now();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| execute(target, &input, ws)));
        let took = t.elapsed().as_secs_f64();
        CURRENT_TARGET.store(0, Ordering::Relaxed);
        if took > slowest.0 {
            slowest = (took, i);
        }
        if outcome.is_err() {
            panics += 1;
            let file = args.crashes.join(format!("{}-seed{}-{i}.bin", target.name(), args.seed));
            let saved = std::fs::create_dir_all(&args.crashes).and_then(|_| std::fs::write(&file, &input));
            let message = last_panic.lock().map(|s| s.clone()).unwrap_or_default();
            eprintln!(
                "hudd-fuzz: {} input {i} panicked ({message}); {}",
                target.name(),
                match saved {
                    Ok(()) => format!("saved to {}", file.display()),
                    Err(e) => format!("could not be saved: {e}"),
                }
            );
        }
        done += 1;
        if last_report.elapsed() > Duration::from_secs(30) {
            eprintln!(
                "hudd-fuzz: {} {done} inputs, {:.0}/s",
                target.name(),
                done as f64 / start.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{:<9} {done:>9} inputs from {} corpus files in {secs:.1} s ({:.0}/s), {panics} panics, largest allocation {:.1} MB, slowest input {} ({:.3} s), seed {}",
        target.name(),
        mutator.len(),
        done as f64 / secs.max(1e-9),
        LARGEST.load(Ordering::Relaxed) as f64 / 1e6,
        slowest.1,
        slowest.0,
        args.seed
    );
    panics > 0
}
