//! Progress bars (indicatif) for runs, epochs and attack sweeps, and log lines that go
//! around them. `--quiet` hides both.

use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The bars of one command.
#[derive(Debug, Clone)]
pub struct Progress {
    multi: MultiProgress,
    quiet: bool,
}

impl Progress {
    /// Bars on stderr (hidden when `quiet`, and by indicatif when stderr is not a terminal).
    pub fn new(quiet: bool) -> Progress {
        let target = if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        Progress {
            multi: MultiProgress::with_draw_target(target),
            quiet,
        }
    }

    /// Whether logs are suppressed.
    pub fn quiet(&self) -> bool {
        self.quiet
    }

    /// A bar of `len` steps labelled `what`, with elapsed time and ETA.
    pub fn bar(&self, len: u64, what: &str) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new(len));
        let style = ProgressStyle::with_template(
            "{prefix:>12.bold} [{bar:30}] {pos}/{len} {msg} ({elapsed} elapsed, ETA {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(what.to_string());
        bar.enable_steady_tick(Duration::from_millis(500));
        bar
    }

    /// Prints a log line above the bars (nothing when quiet).
    pub fn log(&self, line: &str) {
        if !self.quiet {
            // Printing fails only when stderr is gone; then there is nowhere to log to.
            if self.multi.is_hidden() {
                eprintln!("{line}");
            } else {
                let _ = self.multi.println(line);
            }
        }
    }

    /// Prints a line only where no bar shows it: when stderr is not a terminal (a log
    /// file, CI) and not quiet. Used for per-epoch and per-run lines a bar would carry.
    pub fn note(&self, line: &str) {
        if !self.quiet && self.multi.is_hidden() {
            eprintln!("{line}");
        }
    }

    /// Prints a warning, even when quiet.
    pub fn warn(&self, line: &str) {
        if self.multi.is_hidden() {
            eprintln!("warning: {line}");
        } else {
            let _ = self.multi.println(format!("warning: {line}"));
        }
    }
}
