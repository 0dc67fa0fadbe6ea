//! Hooks for the kill-anywhere test (`tests/kill_anywhere.rs`), inert unless their
//! environment variables are set.
//!
//! - `SPECREG_PHASE_LOG=FILE`: every phase of a sweep (`train <run>`, `eval <run>`,
//!   `report`, and `report written` at its end) appends `<milliseconds since the first
//!   phase> <phase>` to FILE when it begins, so a harness can send SIGKILL at a random
//!   moment inside a chosen phase; every atomic file write appends `write <KIND>`.
//! - `SPECREG_KILL_AT=KIND:N`: the process sends itself SIGKILL halfway through writing
//!   the bytes of its N-th (1-based) atomic file write of KIND: `checkpoint` (files under
//!   a run's `checkpoint/`), `run` (the other files of a run folder) or `report` (files
//!   outside run folders: `REPORT.md`, figures, timing). The windows of these writes are
//!   too short to hit from outside.

use std::io::Write as _;
use std::path::{Component, Path};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// What an atomic write belongs to, for `SPECREG_KILL_AT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteKind {
    Checkpoint,
    Run,
    Report,
}

impl WriteKind {
    fn parse(s: &str) -> Option<WriteKind> {
        match s {
            "checkpoint" => Some(WriteKind::Checkpoint),
            "run" => Some(WriteKind::Run),
            "report" => Some(WriteKind::Report),
            _ => None,
        }
    }

    fn of(path: &Path) -> WriteKind {
        let names: Vec<String> = path
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect();
        if names.iter().any(|n| n == "checkpoint") {
            WriteKind::Checkpoint
        } else if names.iter().rev().skip(1).any(|n| {
            n.strip_prefix("seed")
                .is_some_and(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()))
        }) {
            WriteKind::Run
        } else {
            WriteKind::Report
        }
    }

    fn name(self) -> &'static str {
        match self {
            WriteKind::Checkpoint => "checkpoint",
            WriteKind::Run => "run",
            WriteKind::Report => "report",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// `SPECREG_KILL_AT`, parsed once. A malformed value is reported and ignored.
fn kill_at() -> Option<(WriteKind, usize)> {
    static AT: OnceLock<Option<(WriteKind, usize)>> = OnceLock::new();
    *AT.get_or_init(|| {
        let v = std::env::var("SPECREG_KILL_AT").ok()?;
        let parsed = v.split_once(':').and_then(|(k, n)| {
            Some((
                WriteKind::parse(k)?,
                n.parse::<usize>().ok().filter(|&n| n > 0)?,
            ))
        });
        if parsed.is_none() {
            eprintln!(
                "warning: SPECREG_KILL_AT={v:?} ignored: expected checkpoint:N, run:N or report:N"
            );
        }
        parsed
    })
}

/// Called by [`write_atomic`](crate::outputs::write_atomic) halfway through writing a
/// file's bytes: ends the process with SIGKILL when this is the write `SPECREG_KILL_AT`
/// names.
pub(crate) fn mid_write(path: &Path) {
    static COUNTS: [AtomicUsize; 3] = [const { AtomicUsize::new(0) }; 3];
    let here = WriteKind::of(path);
    phase(&format!("write {}", here.name()));
    let Some((kind, n)) = kill_at() else {
        return;
    };
    if here == kind && COUNTS[here.index()].fetch_add(1, Ordering::SeqCst) + 1 == n {
        sigkill_self();
    }
}

/// Sends SIGKILL to this process (no destructors, no flushing, as a real kill).
fn sigkill_self() -> ! {
    let pid = std::process::id().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status();
    // `kill` is not there or failed: abort is the nearest thing (also no clean-up).
    std::process::abort()
}

/// Appends `phase` to `SPECREG_PHASE_LOG`, if set.
pub fn phase(phase: &str) {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    let Some(path) = std::env::var_os("SPECREG_PHASE_LOG") else {
        return;
    };
    let line = format!("{} {phase}\n", start.elapsed().as_millis());
    // The log is a test aid: failing to write it must not stop a sweep.
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = f.write_all(line.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_classified_by_folder() {
        let of = |p: &str| WriteKind::of(Path::new(p));
        assert_eq!(
            of("/r/exp1/vanilla/seed0/checkpoint/epoch-0001/model.safetensors"),
            WriteKind::Checkpoint
        );
        assert_eq!(
            of("/r/exp1/vanilla/seed0/checkpoint/state.json"),
            WriteKind::Checkpoint
        );
        assert_eq!(of("/r/exp1/vanilla/seed12/summary.json"), WriteKind::Run);
        assert_eq!(of("/r/REPORT.md"), WriteKind::Report);
        assert_eq!(of("/r/figures/exp1-shallow-pgd.png"), WriteKind::Report);
        assert_eq!(of("/r/seedling/REPORT.md"), WriteKind::Report);
    }
}
