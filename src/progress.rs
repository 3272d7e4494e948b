//! The progress bar of a command that runs a while (`load-synthetic`, `pooling`), cleared when
//! it is dropped, so that what the command prints at the end stands alone.

use std::ops::Deref;

/// An indicatif bar on stderr; cleared when dropped, also when the task showing it is aborted.
pub struct Bar(indicatif::ProgressBar);

impl Bar {
    /// A bar of `len` steps, drawn by `template` (indicatif's template language).
    ///
    /// # Panics
    /// If `template` is not a valid template: Penny's are fixed strings.
    pub fn new(len: u64, template: &str) -> Bar {
        let style = indicatif::ProgressStyle::with_template(template)
            .expect("Penny's progress bar templates are valid");
        Bar(indicatif::ProgressBar::new(len).with_style(style))
    }
}

impl Deref for Bar {
    type Target = indicatif::ProgressBar;

    fn deref(&self) -> &indicatif::ProgressBar {
        &self.0
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}
