//! Live progress on stderr: a spinner per tenant on a terminal, plain timestamped lines
//! (one per change) when stderr is a pipe or a file, so logs and CI output stay readable.

use std::{
    io::IsTerminal,
    time::{Duration, Instant},
};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// One progress display for a command, however many tenants it follows.
pub struct Display {
    multi: Option<MultiProgress>,
    started: Instant,
    width: usize,
}

impl Display {
    /// `width` is the longest name shown, so the columns line up.
    pub fn new(width: usize) -> Self {
        let multi = std::io::stderr()
            .is_terminal()
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Self {
            multi,
            started: Instant::now(),
            width,
        }
    }

    pub fn line(&self, name: &str) -> Line {
        let bar = self.multi.as_ref().map(|multi| {
            let style = style("{spinner:.cyan}", self.width).tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏✓");
            let bar = multi.add(ProgressBar::new_spinner().with_style(style));
            bar.set_prefix(name.to_owned());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Line {
            bar,
            name: name.to_owned(),
            started: self.started,
            width: self.width,
            last: String::new(),
        }
    }

    /// A message above the spinners, or a plain line.
    pub fn println(&self, text: &str) {
        match &self.multi {
            Some(multi) => {
                let _ = multi.println(text);
            }
            None => eprintln!("{text}"),
        }
    }
}

/// The progress of one tenant.
pub struct Line {
    bar: Option<ProgressBar>,
    name: String,
    started: Instant,
    width: usize,
    last: String,
}

impl Line {
    /// Shows the tenant's status and current step; a plain line only when they changed.
    pub fn update(&mut self, status: &str, step: &str) {
        let text = format!("{status:<12} {step}");
        if text == self.last {
            return;
        }
        match &self.bar {
            Some(bar) => bar.set_message(text.clone()),
            None => self.plain(&text),
        }
        self.last = text;
    }

    /// The final state: the spinner stops with `text`, or a last plain line.
    pub fn finish(&self, ok: bool, status: &str, detail: &str) {
        let text = format!("{status:<12} {detail}");
        match &self.bar {
            Some(bar) => {
                let mark = if ok { "✓" } else { "✗" };
                bar.set_style(style(mark, self.width));
                bar.finish_with_message(text);
            }
            None => self.plain(&text),
        }
    }

    fn plain(&self, text: &str) {
        let elapsed = self.started.elapsed().as_secs_f64();
        let line = format!(
            "[{elapsed:>6.1}s] {:<width$}  {text}",
            self.name,
            width = self.width
        );
        eprintln!("{}", line.trim_end());
    }
}

/// A line's look: `head` (the spinner, or the final mark), the name padded to `width`, the
/// time so far, and the current step.
fn style(head: &str, width: usize) -> ProgressStyle {
    ProgressStyle::with_template(&format!(
        "{head} {{prefix:<{width}}} {{elapsed:>4}}  {{wide_msg}}"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_spinner())
}
